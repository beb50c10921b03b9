export {
  Store,
  type EnvRecord,
  type SessionRecord,
  type EnvSnapshot,
  type SessionSnapshot,
  type RequestOutcome,
  type RequestSessionInput,
  type StoredSessionState,
  type SlackMessageState,
  type SlackStatusChange,
  type SlackPostClaim,
  type GuestAddress,
} from './store.js';
export { storeKeys, type StoreKeys } from './keys.js';
