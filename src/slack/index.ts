export { startNotifier, type Notifier, type NotifierOptions } from './notifier.js';
export type { NotificationMessages, RenderedMessage } from './delivery.js';
export { NOTIFY_QUEUE, type NotifyJob, type NotifyRetry } from './notify-queue.js';
export { slackSecretsFrom, type SlackSecrets } from './secrets.js';
export { startSlack, type SlackHandle, type StartSlackOptions } from './start.js';
export { recordFailures } from './failures.js';
export { studentIdOf, parseStudentId, type SlackUserRef } from './identity.js';
export {
  sessionStatusMessage,
  expiryWarningMessage,
  sessionEndedMessage,
  type SlackMessage,
} from './messages.js';
export {
  renderManifest,
  slackManifest,
  usageHint,
  BOT_SCOPES,
  type ManifestOptions,
} from './manifest.js';
