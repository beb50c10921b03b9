/**
 * The environment for a child `bin/labvirt.js` (serve, dev, render…): the
 * compiled CLI in dist/ when it is at least as new as every source file, the
 * sources through tsx otherwise (bin/labvirt.js decides, so a test never runs
 * stale code). Compiled, a child loads its modules in about half the CPU time
 * (importing the app: 2.7–3.0 s of CPU from dist/, 4.9–6.8 s through tsx on
 * the shared 2-core machine), which a test that starts several children pays
 * each time. `npm ci` builds dist/ (the "prepare" script), so CI runs it.
 */
export function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, LABVIRT_FROM_SOURCE: '', ...extra };
}
