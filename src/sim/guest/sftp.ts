import type { Stats } from 'node:fs';
import {
  lstat,
  mkdir,
  open,
  opendir,
  readdir,
  realpath,
  rename,
  rmdir,
  stat,
  unlink,
  chmod,
  type FileHandle,
} from 'node:fs/promises';
import { posix, join } from 'node:path';
import ssh2, { type Attributes, type SFTPWrapper } from 'ssh2';

// ssh2 is CommonJS: under Node's ESM loader only `default` carries these.
const { utils } = ssh2;

const { STATUS_CODE } = utils.sftp;

function attrsOf(st: Stats): Attributes {
  return {
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    atime: Math.floor(st.atimeMs / 1000),
    mtime: Math.floor(st.mtimeMs / 1000),
  };
}

function longname(name: string, st: Stats): string {
  const type = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : '-';
  const perms = 'rwxrwxrwx'
    .split('')
    .map((c, i) => (st.mode & (1 << (8 - i)) ? c : '-'))
    .join('');
  return `${type}${perms} 1 ${st.uid} ${st.gid} ${st.size} ${st.mtime.toISOString()} ${name}`;
}

function statusFor(err: unknown): number {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOENT':
      return STATUS_CODE.NO_SUCH_FILE;
    case 'EACCES':
    case 'EPERM':
      return STATUS_CODE.PERMISSION_DENIED;
    default:
      return STATUS_CODE.FAILURE;
  }
}

/**
 * Serves SFTP over a guest's sandbox: guest paths are resolved lexically
 * against the user's home and can never name anything above the sandbox.
 */
export function serveSftp(sftp: SFTPWrapper, sandbox: string, home: string): void {
  const files = new Map<number, FileHandle>();
  const dirs = new Map<number, { path: string; done: boolean }>();
  let next = 1;
  const guestPath = (p: string) => posix.resolve(home, p || '.');
  const hostPath = (p: string) => join(sandbox, guestPath(p));
  const handleId = (b: Buffer) => (b.length === 4 ? b.readUInt32BE(0) : -1);
  const newHandle = () => {
    const id = next++;
    const b = Buffer.alloc(4);
    b.writeUInt32BE(id);
    return { id, b };
  };
  const fail = (reqId: number) => (err: unknown) => sftp.status(reqId, statusFor(err));

  sftp.on('REALPATH', (reqId, path) => {
    sftp.name(reqId, [
      { filename: guestPath(path), longname: guestPath(path), attrs: {} as Attributes },
    ]);
  });
  sftp.on('OPEN', (reqId, filename, flags, attrs) => {
    const mode = utils.sftp.flagsToString(flags);
    if (!mode) return sftp.status(reqId, STATUS_CODE.OP_UNSUPPORTED);
    open(hostPath(filename), mode, attrs?.mode ?? 0o644).then((fh) => {
      const h = newHandle();
      files.set(h.id, fh);
      sftp.handle(reqId, h.b);
    }, fail(reqId));
  });
  sftp.on('READ', (reqId, handle, offset, length) => {
    const fh = files.get(handleId(handle));
    if (!fh) return sftp.status(reqId, STATUS_CODE.FAILURE);
    const buf = Buffer.alloc(Math.min(length, 256 * 1024));
    fh.read(buf, 0, buf.length, offset).then(({ bytesRead }) => {
      if (bytesRead === 0) sftp.status(reqId, STATUS_CODE.EOF);
      else sftp.data(reqId, buf.subarray(0, bytesRead));
    }, fail(reqId));
  });
  sftp.on('WRITE', (reqId, handle, offset, data) => {
    const fh = files.get(handleId(handle));
    if (!fh) return sftp.status(reqId, STATUS_CODE.FAILURE);
    fh.write(data, 0, data.length, offset).then(
      () => sftp.status(reqId, STATUS_CODE.OK),
      fail(reqId),
    );
  });
  sftp.on('FSTAT', (reqId, handle) => {
    const fh = files.get(handleId(handle));
    if (!fh) return sftp.status(reqId, STATUS_CODE.FAILURE);
    fh.stat().then((st) => sftp.attrs(reqId, attrsOf(st)), fail(reqId));
  });
  sftp.on('FSETSTAT', (reqId, handle, attrs) => {
    const fh = files.get(handleId(handle));
    if (!fh) return sftp.status(reqId, STATUS_CODE.FAILURE);
    (attrs.mode !== undefined ? fh.chmod(attrs.mode & 0o7777) : Promise.resolve()).then(
      () => sftp.status(reqId, STATUS_CODE.OK),
      fail(reqId),
    );
  });
  sftp.on('SETSTAT', (reqId, path, attrs) => {
    (attrs.mode !== undefined
      ? chmod(hostPath(path), attrs.mode & 0o7777)
      : Promise.resolve()
    ).then(() => sftp.status(reqId, STATUS_CODE.OK), fail(reqId));
  });
  sftp.on('CLOSE', (reqId, handle) => {
    const id = handleId(handle);
    const fh = files.get(id);
    if (fh) {
      files.delete(id);
      fh.close().then(() => sftp.status(reqId, STATUS_CODE.OK), fail(reqId));
    } else if (dirs.delete(id)) {
      sftp.status(reqId, STATUS_CODE.OK);
    } else {
      sftp.status(reqId, STATUS_CODE.FAILURE);
    }
  });
  sftp.on('STAT', (reqId, path) => {
    stat(hostPath(path)).then((st) => sftp.attrs(reqId, attrsOf(st)), fail(reqId));
  });
  sftp.on('LSTAT', (reqId, path) => {
    lstat(hostPath(path)).then((st) => sftp.attrs(reqId, attrsOf(st)), fail(reqId));
  });
  sftp.on('OPENDIR', (reqId, path) => {
    const p = hostPath(path);
    opendir(p).then(async (d) => {
      await d.close();
      const h = newHandle();
      dirs.set(h.id, { path: p, done: false });
      sftp.handle(reqId, h.b);
    }, fail(reqId));
  });
  sftp.on('READDIR', (reqId, handle) => {
    const d = dirs.get(handleId(handle));
    if (!d) return sftp.status(reqId, STATUS_CODE.FAILURE);
    if (d.done) return sftp.status(reqId, STATUS_CODE.EOF);
    d.done = true;
    readdir(d.path).then(async (names) => {
      const entries = [];
      for (const name of names) {
        try {
          const st = await lstat(join(d.path, name));
          entries.push({ filename: name, longname: longname(name, st), attrs: attrsOf(st) });
        } catch {
          /* vanished meanwhile */
        }
      }
      if (entries.length === 0) sftp.status(reqId, STATUS_CODE.EOF);
      else sftp.name(reqId, entries);
    }, fail(reqId));
  });
  sftp.on('MKDIR', (reqId, path, attrs) => {
    mkdir(hostPath(path), { mode: attrs?.mode ?? 0o755 }).then(
      () => sftp.status(reqId, STATUS_CODE.OK),
      fail(reqId),
    );
  });
  sftp.on('RMDIR', (reqId, path) => {
    rmdir(hostPath(path)).then(() => sftp.status(reqId, STATUS_CODE.OK), fail(reqId));
  });
  sftp.on('REMOVE', (reqId, path) => {
    unlink(hostPath(path)).then(() => sftp.status(reqId, STATUS_CODE.OK), fail(reqId));
  });
  sftp.on('RENAME', (reqId, from, to) => {
    rename(hostPath(from), hostPath(to)).then(
      () => sftp.status(reqId, STATUS_CODE.OK),
      fail(reqId),
    );
  });
  sftp.on('READLINK', (reqId, path) => {
    realpath(hostPath(path)).then(
      (p) =>
        sftp.name(reqId, [
          {
            filename: p.startsWith(sandbox) ? p.slice(sandbox.length) || '/' : p,
            longname: '',
            attrs: {} as Attributes,
          },
        ]),
      fail(reqId),
    );
  });
  // The client ends its side when done; sftp-server exits then, closing the channel.
  // sshd sends exit-status 0 when sftp-server exits, and scp (SFTP mode)
  // fails without it; ssh2's SFTP object has no exit(), so use its protocol.
  sftp.on('end', () => {
    const raw = sftp as unknown as {
      _protocol?: { exitStatus(id: number, code: number): void };
      outgoing?: { id: number; state: string };
    };
    if (raw._protocol && raw.outgoing?.state === 'open') {
      try {
        raw._protocol.exitStatus(raw.outgoing.id, 0);
      } catch {
        /* channel already closing */
      }
    }
    sftp.end();
  });
  sftp.on('close', () => {
    for (const fh of files.values()) void fh.close().catch(() => undefined);
    files.clear();
  });
}
