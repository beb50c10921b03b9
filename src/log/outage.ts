import type { Logger } from './index.js';

export interface OutageLogOptions {
  /** The warning that opens an outage (its first failure's fields beside it). */
  lost: string;
  /** The debug line of each further failure while the outage lasts. */
  again: string;
  /** The info line that closes it, with `outageSeconds`. */
  back: string;
  /**
   * An outage with no failure in this long has ended, even if nothing said
   * so (a success may go unseen: a connection that failed is not always
   * the one that recovers). A failure after it opens a new outage.
   */
  quietEndsMs?: number;
  /**
   * A success this soon after a failure does not end the outage: a service
   * that answers every other call (an overloaded API server, a flapping
   * link) is one outage, not a warning and an info line per flap.
   */
  steadyMs?: number;
  now?: () => number;
}

/** What metrics read of an outage account at a scrape. */
export interface DependencyHealth {
  readonly open: boolean;
  readonly outages: number;
}

/**
 * One account of a dependency being out of reach (Redis, the host's API
 * server): every caller retries on its own, and logging each failure wrote
 * dozens of identical warnings a second. The first failure of an outage is
 * one warning, the rest are debug lines, and the first success afterwards
 * one info line saying how long it lasted.
 */
export class OutageLog implements DependencyHealth {
  private since: number | undefined;
  private lastFailure = 0;
  private opened = 0;
  private readonly quietEndsMs: number;
  private readonly steadyMs: number;
  private readonly now: () => number;

  constructor(
    private readonly log: Logger,
    private readonly texts: OutageLogOptions,
  ) {
    this.quietEndsMs = texts.quietEndsMs ?? 60_000;
    this.steadyMs = texts.steadyMs ?? 0;
    this.now = texts.now ?? Date.now;
  }

  /** Whether an outage is open now (its warning written). */
  get open(): boolean {
    if (this.since !== undefined && this.now() - this.lastFailure > this.quietEndsMs) {
      this.since = undefined;
    }
    return this.since !== undefined;
  }

  /** Outages opened so far (metrics). */
  get outages(): number {
    return this.opened;
  }

  /** A failure that says the dependency cannot be reached; `fields` go on its line. */
  failure(fields: Record<string, unknown>): void {
    const opened = this.open;
    const t = this.now();
    this.lastFailure = t;
    if (opened) {
      this.log.debug(fields, this.texts.again);
      return;
    }
    this.since = t;
    this.opened++;
    this.log.warn(fields, this.texts.lost);
  }

  /** The dependency answered: closes an open outage with one info line. */
  success(fields: Record<string, unknown> = {}): void {
    if (this.since === undefined) return;
    const t = this.now();
    if (t - this.lastFailure < this.steadyMs) return;
    const seconds = (t - this.since) / 1000;
    this.since = undefined;
    this.log.info({ ...fields, outageSeconds: Math.round(seconds * 10) / 10 }, this.texts.back);
  }
}
