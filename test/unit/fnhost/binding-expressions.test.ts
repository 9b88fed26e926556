import { describe, expect, it } from 'vitest';
import { BindingData, DateTimeOffsetValue, Dictionary, EnumValue, OpaqueValue } from '../../../infra/local/src/worker/binding-data.js';
import {
  formatDateTime,
  formatGuid,
  parseBindingTemplate,
  resolveAppSettings,
  resolveBindingExpressions,
  resolveBindingTemplate,
} from '../../../infra/local/src/worker/binding-expressions.js';
import { ManualClock } from './manual-clock.js';

const NOW = Date.parse('2018-02-16T17:59:55.123Z');
const GUID = '50710cb5-84b9-4d87-9d83-a03d6976a682';

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
    const out = resolveBindingTemplate('%Container%/{name}', { bindingData: BindingData.from({ name: 'x' }) }, { Container: 'c' });
    expect(out).toBe('c/x');
  });
});

const data = (record: Record<string, unknown>): BindingData => BindingData.from(record);

describe('{...} binding expressions', () => {
  it('looks top-level names up ignoring case, and nested JSON properties too', () => {
    const bindingData = data({ QueueTrigger: 'hello', data: { Url: 'https://x/y', nested: { Id: 7 } } });
    expect(resolveBindingExpressions('{queuetrigger}', { bindingData })).toBe('hello');
    expect(resolveBindingExpressions('{DATA.url}|{data.Nested.id}', { bindingData })).toBe('https://x/y|7');
  });

  it('prefers an exact-case JSON property over one that differs only in case', () => {
    const bindingData = data({ o: { name: 'lower', Name: 'exact' } });
    expect(resolveBindingExpressions('{o.Name}', { bindingData })).toBe('exact');
    expect(resolveBindingExpressions('{o.NAME}', { bindingData })).toBe('lower');
  });

  it('matches dictionary keys (like HTTP Query) by exact case only', () => {
    const bindingData = data({ Query: new Dictionary([['name', 'ada']]) });
    expect(resolveBindingExpressions('{query.name}', { bindingData })).toBe('ada');
    expect(() => resolveBindingExpressions('{Query.Name}', { bindingData })).toThrow("Error while accessing 'Name': property doesn't exist.");
  });

  it("reports a missing value with the host's text, naming the parameter", () => {
    expect(() => resolveBindingExpressions('archive/{folder}/{fileName}', { bindingData: data({ fileName: 'a.txt' }) })).toThrow(
      "No value for named parameter 'folder'.",
    );
    // Only the first part of a dotted name is the parameter.
    expect(() => resolveBindingExpressions('{order.id}', { bindingData: data({}) })).toThrow("No value for named parameter 'order'.");
    expect(() => resolveBindingExpressions('{a.b}', { bindingData: data({ a: { c: 1 } }) })).toThrow(
      "Error while accessing 'b': property doesn't exist.",
    );
    expect(() => resolveBindingExpressions('{a.b.c}', { bindingData: data({ a: { b: null } }) })).toThrow(
      "Error while accessing 'c': Object reference not set to an instance of an object.",
    );
  });

  it('inserts an empty string for null, objects, arrays and the .NET values the host cannot print', () => {
    const bindingData = data({
      z: null,
      o: { a: 1 },
      arr: [1, 2],
      when: new DateTimeOffsetValue(NOW),
      uri: new OpaqueValue('http://x/y'),
      kind: new EnumValue(2, 'AppendBlob'),
    });
    expect(resolveBindingExpressions('[{z}|{o}|{arr}|{when}|{uri}|{kind}]', { bindingData })).toBe('[|||||2]');
  });

  it('turns strings, numbers and JSON booleans into text and ignores a format on them', () => {
    const bindingData = data({ n: 3.5, i: 42, b: { yes: true, no: false }, s: 'x' });
    expect(resolveBindingExpressions('{n}-{i}-{b.yes}-{b.no}-{s:yyyy}', { bindingData })).toBe('3.5-42-True-False-x');
  });

  it('handles {{ and }} escapes', () => {
    expect(resolveBindingExpressions('{{literal}}/{name}', { bindingData: data({ name: 'n' }) })).toBe('{literal}/n');
    expect(parseBindingTemplate('{{{name}}}')).toMatchObject([
      { kind: 'literal', text: '{' },
      { kind: 'expression', expression: 'name' },
      { kind: 'literal', text: '}' },
    ]);
  });

  it("rejects malformed templates with the host's texts and 1-based positions", () => {
    expect(() => parseBindingTemplate('a/{name')).toThrow("Invalid template 'a/{name'. Missing closing bracket at position 3.");
    expect(() => parseBindingTemplate('a/name}')).toThrow("Invalid template 'a/name}'. Missing opening bracket at position 7.");
    expect(() => parseBindingTemplate('a/{}')).toThrow("Invalid template 'a/{}'. The parameter name at position 3 is empty.");
    expect(() => parseBindingTemplate('{bad-name}')).toThrow("The parameter name 'bad-name' is invalid.");
    expect(() => parseBindingTemplate('{9lives}')).toThrow("Invalid template expression '9lives'.");
    // No trimming: a space makes the name invalid, as in the host.
    expect(() => parseBindingTemplate('{ name }')).toThrow("Invalid template expression ' name '.");
    expect(() => parseBindingTemplate('{a..b}')).toThrow(/Illegal expression 'a\.\.b'/);
    // '-' is allowed after the first part, and in builtins.
    expect(parseBindingTemplate('{a.b-c}/{rand-guid}')).toHaveLength(3);
  });

  it('provides {rand-guid}, {DateTime} and sys from the injected clock and GUID source', async () => {
    const clock = new ManualClock(NOW);
    const guids = ['50710cb5-84b9-4d87-9d83-a03d6976a682', 'a0a0a0a0-b1b1-c2c2-d3d3-e4e4e4e4e4e4'];
    let next = 0;
    const ctx = {
      bindingData: data({}),
      functionName: 'copyBlob',
      now: () => clock.now(),
      newGuid: () => guids[next++ % guids.length] ?? '',
    };
    expect(resolveBindingExpressions('{rand-guid}', ctx)).toBe(guids[0]);
    // Every use is a new GUID.
    expect(resolveBindingExpressions('{rand-guid:N}', ctx)).toBe('a0a0a0a0b1b1c2c2d3d3e4e4e4e4e4e4');
    expect(resolveBindingExpressions('{RAND-GUID:B}/{sys.RandGuid:P}', ctx)).toBe(`{${guids[0]}}/(${guids[1]})`);
    expect(resolveBindingExpressions('{DateTime}', ctx)).toBe('2018-02-16T17-59-55Z');
    expect(resolveBindingExpressions('{datetime:yyyy/MM/dd}', ctx)).toBe('2018/02/16');
    expect(resolveBindingExpressions('{DateTime:HH:mm}', ctx)).toBe('17:59');
    expect(resolveBindingExpressions('{sys.utcnow}', ctx)).toBe('2018-02-16T17-59-55Z');
    expect(resolveBindingExpressions('{SYS.UtcNow:yyyyMMdd}', ctx)).toBe('20180216');
    expect(resolveBindingExpressions('{sys.methodName}', ctx)).toBe('copyBlob');
    expect(resolveBindingExpressions('{sys}', ctx)).toBe('');
    expect(() => resolveBindingExpressions('{sys.nope}', ctx)).toThrow("Error while accessing 'nope': property doesn't exist.");
    await clock.advance(61_000);
    expect(resolveBindingExpressions('{DateTime:HH:mm:ss}', ctx)).toBe('18:00:56');
  });

  it("keeps the host's builtin quirks: a dot ends the format, and '{DateTime:fmt}' ignores binding data", () => {
    const ctx = { bindingData: data({ DateTime: 'from-trigger' }), now: () => NOW };
    expect(resolveBindingExpressions('{DateTime}', ctx)).toBe('from-trigger');
    expect(resolveBindingExpressions('{DateTime:yyyy}', ctx)).toBe('2018');
    expect(resolveBindingExpressions('{DateTime:dd.MM.yyyy}', ctx)).toBe('16');
  });

  it('lets binding data named sys shadow the builtin object', () => {
    const ctx = { bindingData: data({ sys: { randguid: 'mine' } }), newGuid: () => GUID };
    expect(resolveBindingExpressions('{sys.randguid}', ctx)).toBe('mine');
    expect(() => resolveBindingExpressions('{sys.utcnow}', ctx)).toThrow("Error while accessing 'utcnow'");
  });

  it('escapes resolved values only, when asked', () => {
    const ctx = { bindingData: data({ name: "O'Brien" }), escapeValue: (v: string) => v.replace(/'/g, "''") };
    expect(resolveBindingExpressions("Name eq '{name}'", ctx)).toBe("Name eq 'O''Brien'");
  });

  it('formats DateTime values with the default or a given format, and GUIDs with .NET formats', () => {
    const bindingData = data({ when: new Date(NOW) });
    expect(resolveBindingExpressions('{when}', { bindingData })).toBe('2018-02-16T17-59-55Z');
    expect(resolveBindingExpressions('{when:HH:mm}', { bindingData })).toBe('17:59');
    expect(resolveBindingExpressions('{when: }', { bindingData })).toBe('2018-02-16T17-59-55Z');
    expect(() => resolveBindingExpressions('{DateTime:q}', { bindingData, now: () => NOW })).toThrow(/not a date format/);
    expect(formatGuid(GUID, 'X')).toBe('{0x50710cb5,0x84b9,0x4d87,{0x9d,0x83,0xa0,0x3d,0x69,0x76,0xa6,0x82}}');
    expect(() => formatGuid(GUID, 'Q')).toThrow('Format string can be only "D", "d", "N", "n", "P", "p", "B", "b", "X" or "x".');
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
