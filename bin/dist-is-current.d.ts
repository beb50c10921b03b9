/**
 * True when `<root>/dist/cli/main.js` exists and no `.ts` file under
 * `<root>/src` (nor any of `alsoInputs`, paths under root) is newer.
 */
export function distIsCurrent(root: string, alsoInputs?: string[]): boolean;
