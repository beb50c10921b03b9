import type { Command } from 'commander';

/** Reads one line from a terminal without echoing it. */
function readHidden(prompt: string): Promise<string> {
  const input = process.stdin;
  process.stderr.write(prompt);
  input.setRawMode(true);
  input.resume();
  input.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let typed = '';
    const done = (err?: Error) => {
      input.setRawMode(false);
      input.pause();
      input.off('data', onData);
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(typed);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new Error('cancelled'));
        if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1);
        else typed += ch;
      }
    };
    input.on('data', onData);
  });
}

async function readPiped(): Promise<string> {
  let all = '';
  for await (const chunk of process.stdin) all += String(chunk);
  return all.replace(/\r?\n$/, '');
}

/** `labvirt web hash-password`: the `passwordHash` of an operator in `web.operators`. */
export function registerWebCommands(program: Command): void {
  const web = program.command('web').description('the web pages (student terminal, /admin)');
  web
    .command('hash-password')
    .description(
      'read an operator password (typed without echo, or piped on standard input) and print its scrypt hash for web.operators',
    )
    .addHelpText(
      'after',
      '\nExample:\n  labvirt web hash-password\n  printf \'%s\' "$PASSWORD" | labvirt web hash-password',
    )
    .action(async () => {
      const password = process.stdin.isTTY
        ? await readHidden('operator password: ')
        : await readPiped();
      const { hashPassword } = await import('../../web/index.js');
      process.stdout.write(`${await hashPassword(password)}\n`);
    });
}
