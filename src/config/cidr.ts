/** IPv4 CIDR helpers for validating the configuration (no dependency on kube/). */

export interface Ipv4Cidr {
  /** Network address as an unsigned 32-bit number. */
  base: number;
  prefix: number;
}

const CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

/** Parses `a.b.c.d/n`; undefined when it is not an IPv4 CIDR (octets ≤ 255, prefix ≤ 32). */
export function parseCidr(text: string): Ipv4Cidr | undefined {
  const m = CIDR.exec(text);
  if (!m) return undefined;
  const octets = m.slice(1, 5).map(Number);
  const prefix = Number(m[5]);
  if (octets.some((o) => o > 255) || prefix > 32) return undefined;
  const base = octets.reduce((acc, o) => acc * 256 + o, 0);
  return { base, prefix };
}

function size(prefix: number): number {
  return 2 ** (32 - prefix);
}

/** The CIDR with its host bits cleared, e.g. `10.243.0.0/16` for `10.243.1.2/16`. */
export function networkOf(c: Ipv4Cidr): string {
  const base = c.base - (c.base % size(c.prefix));
  const octets = [24, 16, 8, 0].map((shift) => Math.floor(base / 2 ** shift) % 256);
  return `${octets.join('.')}/${c.prefix}`;
}

/** True when host bits are set (`10.243.0.1/16`): almost always a typo. */
export function hasHostBits(c: Ipv4Cidr): boolean {
  return c.base % size(c.prefix) !== 0;
}

/** True when the two ranges share at least one address. */
export function cidrsOverlap(a: Ipv4Cidr, b: Ipv4Cidr): boolean {
  const aStart = a.base - (a.base % size(a.prefix));
  const bStart = b.base - (b.base % size(b.prefix));
  return aStart < bStart + size(b.prefix) && bStart < aStart + size(a.prefix);
}
