import { FnHostError } from '../errors.js';
import type { OutputValue } from './typed-data.js';

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Whether queue message text is Base64 of UTF-8 text. The host writes messages Base64-encoded;
 * other writers (the portal, Storage Explorer, older SDKs) may write plain text, and plain words
 * can look like Base64 ("test"), so the decoded bytes must also be valid UTF-8 without control
 * characters other than tab and line breaks.
 */
export function isBase64Text(raw: string): boolean {
  if (raw.length === 0 || raw.length % 4 !== 0 || !BASE64.test(raw)) return false;
  const bytes = Buffer.from(raw, 'base64');
  let text: string;
  try {
    text = STRICT_UTF8.decode(bytes);
  } catch {
    return false;
  }
  // eslint-disable-next-line no-control-regex
  return !/[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/.test(text);
}

/** The text of a queue message as it was stored: decoded when it is Base64, else as is. */
export function decodeQueueMessage(raw: string): string {
  return isBase64Text(raw) ? Buffer.from(raw, 'base64').toString('utf8') : raw;
}

/** Encodes message content the way the host's queue output does by default (Base64). */
export function encodeQueueMessage(content: string | Buffer): string {
  return (typeof content === 'string' ? Buffer.from(content, 'utf8') : content).toString('base64');
}

/**
 * The messages a queue output value stands for: an array sends one message per element, objects
 * are sent as JSON, strings as they are, bytes as bytes.
 */
export function queueMessagesFor(value: OutputValue): (string | Buffer)[] {
  switch (value.kind) {
    case 'none':
      return [];
    case 'text':
      return [value.text];
    case 'bytes':
      return [value.bytes];
    case 'json': {
      const items = Array.isArray(value.value) ? (value.value as unknown[]) : [value.value];
      return items.map((item) => {
        if (typeof item === 'string' || Buffer.isBuffer(item)) return item;
        if (item === undefined) throw new FnHostError('ERR_BINDING', 'A queue message cannot be undefined.');
        return JSON.stringify(item);
      });
    }
  }
}

/** Checks a queue name the way the service does, with a message that says what is wrong. */
export function validateQueueName(name: string): void {
  if (name.length < 3 || name.length > 63 || !/^[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$/.test(name)) {
    throw new FnHostError(
      'ERR_BINDING',
      `Invalid queue name: '${name}'. A name must be 3-63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit.`,
    );
  }
}

/** The poison queue of a queue, or undefined when the host would not use one. */
export function poisonQueueName(queue: string): string | undefined {
  if (queue.endsWith('-poison')) return undefined;
  const name = `${queue}-poison`;
  return name.length <= 63 ? name : undefined;
}
