export type CheckStatus = 'pass' | 'warn' | 'fail';

/** One line of the doctor's report. Every warn and fail says how to fix it. */
export interface CheckResult {
  /** Stable id for machines (`--json`), e.g. `kubevirt.bridge`. */
  id: string;
  title: string;
  status: CheckStatus;
  /** What was found. */
  detail: string;
  /** What to do about it (warn and fail only). */
  fix?: string;
}

export interface DoctorReport {
  results: CheckResult[];
  worst: CheckStatus;
}

const RANK: Record<CheckStatus, number> = { pass: 0, warn: 1, fail: 2 };

export function worstOf(results: readonly CheckResult[]): CheckStatus {
  return results.reduce<CheckStatus>((w, r) => (RANK[r.status] > RANK[w] ? r.status : w), 'pass');
}

export const pass = (id: string, title: string, detail: string): CheckResult => ({
  id,
  title,
  status: 'pass',
  detail,
});

export const warn = (id: string, title: string, detail: string, fix: string): CheckResult => ({
  id,
  title,
  status: 'warn',
  detail,
  fix,
});

export const fail = (id: string, title: string, detail: string, fix: string): CheckResult => ({
  id,
  title,
  status: 'fail',
  detail,
  fix,
});
