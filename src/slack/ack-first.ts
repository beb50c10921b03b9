/**
 * Acknowledgements first. Slack waits 3 s for an acknowledgement; the work a
 * command starts (a claim, a check's scripts, the DM) can wait a moment. While
 * requests still wait for theirs, work after an acknowledgement holds back, so
 * a class typing `/lab start` at once is acknowledged before any of its labs
 * begins: on a busy replica the acknowledgements would otherwise queue behind
 * the first starts' claims and notifications in the same event loop.
 */
export class AckFirst {
  private unanswered = 0;
  private waiters: (() => void)[] = [];
  private settle: NodeJS.Timeout | undefined;

  /**
   * @param settleMs how long no request must be waiting before held work goes:
   *   the requests of a burst do not all arrive together (the senders open
   *   their connections over hundreds of milliseconds on a busy machine),
   *   and a gap between two waves should not let the first wave's work in
   *   ahead of the second wave's acknowledgements. Held work waits this
   *   long after a lone command's acknowledgement too: nothing next to a
   *   start's seconds.
   * @param maxHoldMs the longest any work is held, so a steady stream of
   *   requests never starves it.
   */
  constructor(
    private readonly settleMs = 300,
    private readonly maxHoldMs = 2_000,
  ) {}

  /** A request arrived; the returned function marks it answered (idempotent). */
  arrived(): () => void {
    this.unanswered++;
    if (this.settle) {
      clearTimeout(this.settle);
      this.settle = undefined;
    }
    let answered = false;
    return () => {
      if (answered) return;
      answered = true;
      this.unanswered--;
      if (this.unanswered === 0 && this.waiters.length > 0) this.releaseSoon();
    };
  }

  /** Resolves once no request waits for its acknowledgement (or after the longest hold). */
  quiet(): Promise<void> {
    if (this.unanswered === 0 && !this.settle) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const release = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== release);
        resolve();
      }, this.maxHoldMs);
      timer.unref();
      this.waiters.push(release);
    });
  }

  private releaseSoon(): void {
    if (this.settle) clearTimeout(this.settle);
    this.settle = setTimeout(() => {
      this.settle = undefined;
      if (this.unanswered > 0) return;
      const waiters = this.waiters;
      this.waiters = [];
      for (const release of waiters) release();
    }, this.settleMs);
    this.settle.unref();
  }
}
