/**
 * A YAML file as the CLI reads it: parsed with the `yaml` package keeping every node's position,
 * so any problem, whether YAML syntax, a schema issue found here or a field the API names in
 * problem+json, is reported as `file:line:column: field: message`. `--set key=value` overrides
 * are applied to the document (values parsed as YAML, as `az ml --set` parses them), and a problem
 * in a field that came from `--set` names the `--set` instead of a line.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Document, LineCounter, type Node, isMap, isPair, isScalar, isSeq, parse as parseYamlValue, parseDocument } from 'yaml';
import type { z } from 'zod';
import { issuesOf } from '../../shared/schemas/validate.js';
import { CliError, EXIT, type FieldIssue } from './errors.js';

export type FieldPath = (string | number)[];

/** `settings.retry_settings.max_retries`, `files[0].name` → path segments (as shared/schemas/validate.ts names fields). */
export function fieldPath(field: string): FieldPath {
  if (field === '' || field === '(body)') return [];
  const path: FieldPath = [];
  for (const part of field.split('.')) {
    const match = /^([^[]*)((?:\[\d+\])*)$/.exec(part);
    if (!match) {
      path.push(part);
      continue;
    }
    if (match[1]) path.push(match[1]);
    for (const index of (match[2] ?? '').matchAll(/\[(\d+)\]/g)) path.push(Number(index[1]));
  }
  return path;
}

/** A `--set key=value` as given (`text`), its field path, and its value parsed as YAML (as `az ml --set` does). */
export interface Assignment {
  text: string;
  path: FieldPath;
  value: unknown;
}

/**
 * Parses `key=value`; throws a CliError with exit code 2 (a wrong command line) when there is no
 * key or no `=`, or the value is not YAML. Used as the option's commander argParser, so the command
 * line is refused before anything is read or sent.
 */
export function parseAssignment(text: string): Assignment {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new CliError(`--set ${text}: expected key=value (for example settings.mini_batch_size=20).`, EXIT.usage);
  let value: unknown;
  try {
    value = parseYamlValue(text.substring(eq + 1)) as unknown;
  } catch (err) {
    throw new CliError(`--set ${text}: the value is not valid YAML: ${(err as Error).message.split('\n')[0] ?? ''}`, EXIT.usage);
  }
  return { text, path: fieldPath(text.substring(0, eq)), value };
}

function samePrefix(prefix: FieldPath, path: FieldPath): boolean {
  return prefix.length <= path.length && prefix.every((p, i) => String(p) === String(path[i]));
}

export class YamlSource {
  readonly #doc: Document;
  readonly #lines = new LineCounter();
  readonly #sets: { path: FieldPath; text: string }[] = [];

  private constructor(
    /** The file's path as the user gave it (messages name it so). */
    readonly path: string,
    text: string,
    /** The folder relative paths in the file are read from (default: the file's). */
    readonly dir: string = dirname(resolve(path)),
  ) {
    this.#doc = parseDocument(text, { lineCounter: this.#lines, prettyErrors: false, uniqueKeys: true });
    const error = this.#doc.errors[0];
    if (error) {
      const at = this.#lines.linePos(error.pos[0]);
      // Told by the parser's code: a second document is the file's shape, not a field's problem.
      if (error.code === 'MULTIPLE_DOCS') {
        throw new CliError(`${this.path}:${at.line}:${at.col}: the file holds more than one YAML document (a '---' line starts another); a single document is expected.`);
      }
      const field = this.#fieldBefore(error.pos[0]);
      const message = error.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '') ?? error.message;
      throw new CliError(`${this.path}:${at.line}:${at.col}: ${field ? `${field}: ` : ''}invalid YAML: ${message}`);
    }
    if (this.#doc.contents !== null && !isMap(this.#doc.contents)) {
      throw new CliError(`${this.path}:1:1: the file must hold a mapping (field: value lines), not ${isSeq(this.#doc.contents) ? 'a list' : 'a single value'}.`);
    }
  }

  static load(path: string): YamlSource {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new CliError(`Cannot read ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
    return new YamlSource(path, text);
  }

  /** An empty document standing for the command line (`name` in messages; paths relative to the working folder). */
  static empty(name: string): YamlSource {
    return new YamlSource(name, '{}', process.cwd());
  }

  /** Applies a `--set` (parsed once, on the command line: {@link parseAssignment}). */
  set(assignment: Assignment): void {
    this.assign(assignment.path, assignment.value, `--set ${assignment.text}`);
  }

  /** Sets a field from the command line; problems in it name `label` (the option that gave it). */
  assign(path: FieldPath, value: unknown, label: string): void {
    if (this.#doc.contents === null) this.#doc.contents = this.#doc.createNode({});
    this.#doc.setIn(path, value);
    this.#sets.push({ path, text: label });
  }

  /** The document as plain values. */
  value(): Record<string, unknown> {
    return (this.#doc.toJS() as Record<string, unknown> | null) ?? {};
  }

  /** Where a field is: `file:line:col` (of the field, or of the nearest enclosing one that exists), or the `--set` that gave it. */
  where(field: string | FieldPath): string {
    const path = typeof field === 'string' ? fieldPath(field) : field;
    const set = [...this.#sets].reverse().find((s) => samePrefix(s.path, path));
    if (set) return set.text;
    let node: unknown = this.#doc.contents;
    let offset = 0;
    for (const segment of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
        if (!pair) break;
        offset = (pair.key as Node).range?.[0] ?? offset;
        node = pair.value;
      } else if (isSeq(node) && typeof segment === 'number') {
        const item = node.items[segment] as Node | undefined;
        if (!item) break;
        offset = item.range?.[0] ?? offset;
        node = item;
      } else break;
    }
    const at = this.#lines.linePos(offset);
    return `${this.path}:${at.line}:${at.col}`;
  }

  /** The dotted path of the deepest key that starts before `offset` (what a syntax error is inside of). */
  #fieldBefore(offset: number): string | undefined {
    let best: string | undefined;
    const visit = (node: unknown, prefix: string): void => {
      if (isMap(node)) {
        for (const pair of node.items) {
          if (!isPair(pair) || !isScalar(pair.key)) continue;
          const start = pair.key.range?.[0];
          // A key the broken text made out of more than a name (`3\n error_threshold`) names nothing.
          if (start === undefined || start > offset || !/^[\w.$@-]+$/.test(String(pair.key.value))) continue;
          const name = prefix ? `${prefix}.${String(pair.key.value)}` : String(pair.key.value);
          best = name;
          visit(pair.value, name);
        }
      } else if (isSeq(node)) {
        node.items.forEach((item, i) => {
          const start = (item as Node | null)?.range?.[0];
          if (start !== undefined && start <= offset) visit(item, `${prefix}[${i}]`);
        });
      }
    };
    visit(this.#doc.contents, '');
    return best;
  }

  /** An error listing field issues, each at its place in this file. */
  problem(headline: string, issues: FieldIssue[]): CliError {
    const lines = issues.map((i) => `  ${this.where(i.field)}: ${i.field}: ${i.message}`);
    return new CliError([headline, ...lines].join('\n'));
  }

  /**
   * Validates `value` (by default the document) with a shared schema, or throws naming each field
   * at its line; `prefix` is where `value` sits in the document.
   */
  parse<S extends z.ZodType>(schema: S, what: string, value: unknown = this.value(), prefix = ''): z.infer<S> {
    const result = schema.safeParse(value);
    if (result.success) return result.data;
    throw this.problem(`${this.path}: the ${what} is not valid:`, issuesOf(result.error, prefix));
  }

  /** A warning about a field (one the app ignores), at its place. */
  warn(field: string, message: string): void {
    process.stderr.write(`warning: ${this.where(field)}: ${field}: ${message}\n`);
  }
}
