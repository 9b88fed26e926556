import { describe, expect, it } from 'vitest';
import {
  formatDateTime,
  parseBindingTemplate,
  resolveAppSettings,
  resolveBindingExpressions,
  resolveBindingTemplate,
} from '../../../infra/local/src/worker/binding-expressions.js';

const NOW = Date.parse('2018-02-16T17:59:55.123Z');
const GUID = '50710cb5-84b9-4d87-9d83-a03d6976a682';
const fixed = { now: () => NOW, newGuid: () => GUID };

describe('%AppSetting% resolution', () => {
  it('replaces every setting and leaves other text alone', () => {
    expect(resolveAppSettings('%In%/%Name%.txt', { In: 'samples', Name: 'a' })).toBe('samples/a.txt');
    expect(resolveAppSettings('no settings here', {})).toBe('no settings here');
  });

  it('names a missing setting and rejects an unclosed %', () => {
    expect(() => resolveAppSettings('%Missing%/x', {})).toThrow(/'%Missing%' does not resolve to a value: app setting 'Missing'/);
    expect(() => resolveAppSettings('a%b', { b: '1' })).toThrow(/The '%' at position 1 .* does not have a closing '%'/);
  });

  it('runs before {...} expressions', () => {
    const out = resolveBindingTemplate('%Container%/{name}', { bindingData: { name: 'x' } }, { Container: 'c' });
    expect(out).toBe('c/x');
  });
});

describe('{...} binding expressions', () => {
  it('looks names up ignoring case, including dotted paths', () => {
    const data = { QueueTrigger: 'hello', data: { Url: 'https://x/y', nested: { Id: 7 } } };
    expect(resolveBindingExpressions('{queuetrigger}', { bindingData: data })).toBe('hello');
    expect(resolveBindingExpressions('{DATA.url}|{data.Nested.id}', { bindingData: data })).toBe('https://x/y|7');
  });

  it('prefers an exact-case key when two keys differ only in case', () => {
    expect(resolveBindingExpressions('{Name}', { bindingData: { name: 'lower', Name: 'exact' } })).toBe('exact');
  });

  it('reports a missing parameter clearly', () => {
    expect(() => resolveBindingExpressions('out/{x}', { bindingData: {} })).toThrow("No value for named parameter 'x'.");
    expect(() => resolveBindingExpressions('{a.b}', { bindingData: { a: { c: 1 } } })).toThrow(/Error while accessing 'b'/);
  });

  it('turns primitives into text and refuses objects', () => {
    expect(resolveBindingExpressions('{n}-{b}-{z}', { bindingData: { n: 3.5, b: true, z: null } })).toBe('3.5-True-');
    expect(() => resolveBindingExpressions('{o}', { bindingData: { o: { a: 1 } } })).toThrow(/object or an array/);
  });

  it('handles {{ and }} escapes', () => {
    expect(resolveBindingExpressions('{{literal}}/{name}', { bindingData: { name: 'n' } })).toBe('{literal}/n');
  });

  it('rejects malformed templates', () => {
    expect(() => parseBindingTemplate('a/{name')).toThrow(/Missing closing bracket at position 2/);
    expect(() => parseBindingTemplate('a/name}')).toThrow(/Missing opening bracket/);
    expect(() => parseBindingTemplate('a/{}')).toThrow(/Empty parameter name/);
    expect(() => resolveBindingExpressions('{bad-name}', { bindingData: {} })).toThrow(/only allowed in builtins/);
  });

  it('provides {rand-guid}, {DateTime} and sys builtins', () => {
    const ctx = { bindingData: {}, functionName: 'copyBlob', ...fixed };
    expect(resolveBindingExpressions('{rand-guid}', ctx)).toBe(GUID);
    expect(resolveBindingExpressions('{rand-guid:N}', ctx)).toBe(GUID.replace(/-/g, ''));
    expect(resolveBindingExpressions('{DateTime}', ctx)).toBe('2018-02-16T17-59-55Z');
    expect(resolveBindingExpressions('{datetime:yyyy/MM/dd}', ctx)).toBe('2018/02/16');
    expect(resolveBindingExpressions('{sys.randguid}', ctx)).toBe(GUID);
    expect(resolveBindingExpressions('{sys.utcnow}', ctx)).toBe('2018-02-16T17-59-55Z');
    expect(resolveBindingExpressions('{sys.UtcNow:yyyyMMdd}', ctx)).toBe('20180216');
    expect(resolveBindingExpressions('{sys.methodname}', ctx)).toBe('copyBlob');
  });

  it('lets binding data shadow the builtins', () => {
    const ctx = { bindingData: { DateTime: 'from-trigger', sys: { randguid: 'mine' } }, ...fixed };
    expect(resolveBindingExpressions('{DateTime}/{sys.randguid}', ctx)).toBe('from-trigger/mine');
  });

  it('escapes resolved values only, when asked', () => {
    const ctx = { bindingData: { name: "O'Brien" }, escapeValue: (v: string) => v.replace(/'/g, "''") };
    expect(resolveBindingExpressions("Name eq '{name}'", ctx)).toBe("Name eq 'O''Brien'");
  });

  it('formats dates from binding data with the default or a given format', () => {
    const ctx = { bindingData: { when: new Date(NOW) } };
    expect(resolveBindingExpressions('{when}', ctx)).toBe('2018-02-16T17-59-55Z');
    expect(resolveBindingExpressions('{when:HH:mm}', ctx)).toBe('17:59');
  });
});

describe('.NET date formats', () => {
  it('supports the common custom specifiers, quotes and standard formats', () => {
    expect(formatDateTime(NOW, 'yyyy-MM-ddTHH:mm:ss.fffK')).toBe('2018-02-16T17:59:55.123Z');
    expect(formatDateTime(NOW, "yy'y' MMM ddd h tt")).toBe('18y Feb Fri 5 PM');
    expect(formatDateTime(NOW, 'o')).toBe('2018-02-16T17:59:55.1230000Z');
    expect(formatDateTime(NOW, 's')).toBe('2018-02-16T17:59:55');
    expect(formatDateTime(NOW, 'M/d/yyyy h:mm:ss tt')).toBe('2/16/2018 5:59:55 PM');
    expect(formatDateTime(NOW, 'FFFF')).toBe('123');
  });
});
