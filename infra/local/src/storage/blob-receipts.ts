import { appendFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { describeError } from '../errors.js';
import type { Logger } from '../log.js';

interface ReceiptLine {
  /** Function name. */
  f: string;
  /** `container/blobName`. */
  b: string;
  /** The ETag that was processed (successfully or into the poison queue). */
  e: string;
}

/**
 * Which blob versions (by ETag) each blob-triggered function has processed, so a blob fires once
 * per version, also across restarts. The host keeps these receipts in storage; fnhost keeps them
 * in a JSON-lines file under the data folder (one line per receipt, the last line for a blob wins,
 * compacted on load), or in memory when there is no data folder.
 */
export class BlobReceipts {
  readonly #done = new Map<string, string>();
  readonly #file: string | undefined;
  readonly #logger: Logger;
  #writes: Promise<void> = Promise.resolve();
  /**
   * The file ends inside a line (a host stopped in the middle of an append): the next receipt must
   * start a line of its own, or it would be glued to the cut one and lost with it.
   */
  #endsMidLine = false;

  private constructor(file: string | undefined, logger: Logger) {
    this.#file = file;
    this.#logger = logger;
  }

  /** Loads receipts from `file` (created when missing); undefined keeps them in memory. */
  static async open(file: string | undefined, logger: Logger): Promise<BlobReceipts> {
    const receipts = new BlobReceipts(file, logger);
    if (!file) return receipts;
    await mkdir(dirname(file), { recursive: true });
    let text = '';
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    receipts.#endsMidLine = text.length > 0 && !text.endsWith('\n');
    let lines = 0;
    const unreadable: number[] = [];
    for (const [index, line] of text.split('\n').entries()) {
      if (!line.trim()) continue;
      lines += 1;
      const r = readLine(line);
      if (r) receipts.#done.set(key(r.f, r.b), r.e);
      else unreadable.push(index + 1);
    }
    if (unreadable.length > 0) {
      // A line cut short when a host stopped mid-write, or damaged: its blob is processed again.
      const shown = unreadable.slice(0, 5).join(', ') + (unreadable.length > 5 ? ', …' : '');
      logger.warn(`${file}: ${unreadable.length} unreadable line(s) skipped (line ${shown}); the blobs they recorded will be processed again.`);
    }
    if (lines > receipts.#done.size * 2 + 100) {
      await receipts.#compact(file);
      receipts.#endsMidLine = false;
    }
    return receipts;
  }

  /** Whether `fn` has already processed this version of the blob. */
  has(fn: string, blobPath: string, etag: string): boolean {
    return this.#done.get(key(fn, blobPath)) === etag;
  }

  /** Records that `fn` processed this version; persisted before the returned promise resolves. */
  async add(fn: string, blobPath: string, etag: string): Promise<void> {
    this.#done.set(key(fn, blobPath), etag);
    const file = this.#file;
    if (!file) return;
    const line = `${JSON.stringify({ f: fn, b: blobPath, e: etag } satisfies ReceiptLine)}\n`;
    // Appends are chained so lines never interleave.
    this.#writes = this.#writes.then(async () => {
      try {
        await appendFile(file, this.#endsMidLine ? `\n${line}` : line, 'utf8');
        this.#endsMidLine = false;
      } catch (err) {
        // Part of the line may have been written (a full disk): the next one starts a line of its own.
        this.#endsMidLine = true;
        this.#logger.warn(`Cannot record blob receipt in ${file}: ${describeError(err)}`);
      }
    });
    await this.#writes;
  }

  async #compact(file: string): Promise<void> {
    const lines = [...this.#done].map(([k, e]) => {
      const [f, b] = splitKey(k);
      return JSON.stringify({ f, b, e } satisfies ReceiptLine);
    });
    const temp = `${file}.tmp`;
    await writeFile(temp, lines.length > 0 ? `${lines.join('\n')}\n` : '', 'utf8');
    await rename(temp, file);
  }
}

function readLine(line: string): ReceiptLine | undefined {
  try {
    const r = JSON.parse(line) as Partial<ReceiptLine> | null;
    if (typeof r?.f === 'string' && typeof r.b === 'string' && typeof r.e === 'string') return { f: r.f, b: r.b, e: r.e };
  } catch {
    // not JSON: unreadable
  }
  return undefined;
}

function key(fn: string, blobPath: string): string {
  return `${fn.toLowerCase()}\n${blobPath}`;
}

function splitKey(k: string): [string, string] {
  const i = k.indexOf('\n');
  return [k.slice(0, i), k.slice(i + 1)];
}
