import cron from 'node-cron';
import type { Config } from '../config/index.js';

export interface ScheduledTargetInForce {
  name: string;
  minWarm: number;
  /** When the raised target began (the class start minus the lead time). */
  from: string;
  /** When it ends (the class start plus the hold time). */
  until: string;
}

export interface FlavorTarget {
  flavor: string;
  /**
   * The operator's runtime target when one is set (it wins over schedules, so
   * a drained flavor stays empty); else the larger of the flavor's own
   * minWarm and every scheduled target in force.
   */
  minWarm: number;
  maxTotal: number;
  scheduled: ScheduledTargetInForce[];
  /** The runtime target an operator set (`labvirt`'s dashboard or `PUT /v1/pool/flavors/:flavor/target`). */
  override?: number;
}

const MINUTE = 60_000;

/**
 * The warm targets in force at `now`. A scheduled target ("class at 09:00 on
 * Tuesdays needs 30 warm") is in force from `leadMinutes` before a start that
 * its cron expression matches until `holdMinutes` after it, so the pool grows
 * ahead of time and the class starts warm.
 */
export function targetsAt(
  config: Config,
  now: Date,
  overrides: Record<string, number> = {},
): FlavorTarget[] {
  const out = new Map<string, FlavorTarget>();
  for (const [flavor, f] of Object.entries(config.flavors)) {
    out.set(flavor, { flavor, minWarm: f.minWarm, maxTotal: f.maxTotal, scheduled: [] });
  }
  for (const schedule of config.schedules) {
    const target = out.get(schedule.flavor);
    if (!target) continue;
    const start = matchingStartAround(
      schedule.cron,
      schedule.timezone,
      now,
      schedule.leadMinutes,
      schedule.holdMinutes,
    );
    if (!start) continue;
    target.scheduled.push({
      name: schedule.name,
      minWarm: schedule.minWarm,
      from: new Date(start.getTime() - schedule.leadMinutes * MINUTE).toISOString(),
      until: new Date(start.getTime() + schedule.holdMinutes * MINUTE).toISOString(),
    });
    target.minWarm = Math.min(target.maxTotal, Math.max(target.minWarm, schedule.minWarm));
  }
  for (const target of out.values()) {
    const override = overrides[target.flavor];
    if (override === undefined) continue;
    target.override = Math.min(target.maxTotal, override);
    target.minWarm = target.override;
  }
  return [...out.values()];
}

/** The latest minute in [now - hold, now + lead] that the cron expression matches, if any. */
function matchingStartAround(
  expression: string,
  timezone: string | undefined,
  now: Date,
  leadMinutes: number,
  holdMinutes: number,
): Date | undefined {
  const task = cron.createTask(expression, () => undefined, timezone ? { timezone } : {});
  try {
    const base = Math.floor(now.getTime() / MINUTE) * MINUTE;
    for (let m = leadMinutes; m >= -holdMinutes; m--) {
      const candidate = new Date(base + m * MINUTE);
      if (task.match(candidate)) return candidate;
    }
    return undefined;
  } finally {
    void task.destroy();
  }
}
