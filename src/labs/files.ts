import { open, realpath } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join, sep } from 'node:path';

/** Largest lab.yaml or script labvirt reads; a lab is text an author writes, not data. */
export const MAX_LAB_FILE_BYTES = 256 * 1024;

export type LabFileRefusal = 'missing' | 'outside' | 'not-a-file' | 'too-large' | 'not-utf8';

/**
 * Reads a file of a lab folder as an author's text, refusing what a lab file
 * must never be: a path that resolves (through symlinks) outside the folder,
 * anything but a regular file (a FIFO would hang the reader, a device would
 * never end), more than {@link MAX_LAB_FILE_BYTES}, or bytes that are not
 * UTF-8.
 */
export async function readLabFile(
  labDir: string,
  relativePath: string,
): Promise<{ content: string } | { refused: LabFileRefusal }> {
  let real: string;
  let realDir: string;
  try {
    realDir = await realpath(labDir);
    real = await realpath(join(labDir, relativePath));
  } catch {
    return { refused: 'missing' };
  }
  if (!real.startsWith(realDir + sep)) return { refused: 'outside' };
  let handle;
  try {
    // O_NONBLOCK: opening a FIFO with no writer must not wait for one.
    handle = await open(real, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch {
    return { refused: 'missing' };
  }
  try {
    // Checked on the opened file, so a swap between the check and the read changes nothing.
    const info = await handle.stat();
    if (!info.isFile()) return { refused: 'not-a-file' };
    if (info.size > MAX_LAB_FILE_BYTES) return { refused: 'too-large' };
    const bytes = Buffer.alloc(MAX_LAB_FILE_BYTES + 1);
    const { bytesRead } = await handle.read(bytes, 0, bytes.length, 0);
    if (bytesRead > MAX_LAB_FILE_BYTES) return { refused: 'too-large' };
    try {
      return {
        content: new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, bytesRead)),
      };
    } catch {
      return { refused: 'not-utf8' };
    }
  } finally {
    await handle.close();
  }
}

/** What to tell the author about a refused file, and what to do. */
export function refusalText(
  refused: Exclude<LabFileRefusal, 'missing'>,
  file: string,
): { message: string; suggestion: string } {
  switch (refused) {
    case 'outside':
      return {
        message: `\`${file}\` resolves to a path outside the lab folder (a symlink?)`,
        suggestion:
          'keep lab files inside the lab folder as regular files, not symlinks to elsewhere',
      };
    case 'not-a-file':
      return {
        message: `\`${file}\` is not a regular file`,
        suggestion: 'make it a regular file (not a FIFO, device, socket or folder)',
      };
    case 'too-large':
      return {
        message: `\`${file}\` is larger than ${MAX_LAB_FILE_BYTES / 1024} KiB`,
        suggestion: `keep lab files under ${MAX_LAB_FILE_BYTES / 1024} KiB: move data into files the script fetches or generates`,
      };
    case 'not-utf8':
      return {
        message: `\`${file}\` is not valid UTF-8 text`,
        suggestion:
          'save it as UTF-8 (`iconv -f <encoding> -t UTF-8`), and keep binaries out of lab scripts',
      };
  }
}
