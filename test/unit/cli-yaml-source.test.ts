import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { YamlSource } from '../../cli/src/yaml-source.js';

const dir = mkdtempSync(join(tmpdir(), 'cli-yaml-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function load(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  try {
    YamlSource.load(path);
  } catch (err) {
    return (err as Error).message;
  }
  return 'loaded';
}

describe('CLI YAML files', () => {
  it('refuses a file of two documents saying a single one is expected, naming no field', () => {
    const message = load('d9.yml', 'name: m\nversion: 1\ntype: onnx\n---\nname: other\n');
    expect(message).toBe(`${join(dir, 'd9.yml')}:4:1: the file holds more than one YAML document (a '---' line starts another); a single document is expected.`);
  });

  it('accepts one document, with or without a leading ---, and still names the field of a YAML error', () => {
    expect(load('one.yml', '---\nname: m\nversion: 1\n')).toBe('loaded');
    expect(load('dup.yml', 'name: m\nname: n\n')).toMatch(/dup\.yml:2:1: .*invalid YAML/);
  });
});
