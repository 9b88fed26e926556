/**
 * OpenAPI 3.0 → 2.0 (Swagger), for the custom connector definition that Logic Apps and Power
 * Automate require (they take OpenAPI 2.0 only).
 *
 * Why a converter of our own: no well-kept library does this direction. `api-spec-converter`
 * (the one package that claims it) depends on the deprecated `request` and on `sway`, has not
 * been maintained for years, and converts through a pile of formats we do not need;
 * `swagger2openapi` and `@apiture/openapi-down-convert` only go the other ways (2.0 → 3.0,
 * 3.1 → 3.0). The document converted here is always the one `api-document.ts` generates with
 * zod-to-openapi, so this handles exactly the constructs that generator emits, and refuses
 * (throws on) anything else rather than write a wrong 2.0 document:
 *
 * - `$ref` to `#/components/schemas/*` → `#/definitions/*` (and nothing beside a `$ref`: 2.0 and
 *   connectors ignore or refuse siblings);
 * - `nullable: true` → `x-nullable: true` (AutoRest's and the connector platform's spelling);
 * - `anyOf` / `oneOf` (with or without `discriminator`): 2.0 has no unions, so the schema becomes
 *   one without a `type` (any JSON value), its `description` naming the alternatives;
 * - every other keyword of our schemas (type, properties, required, additionalProperties, items,
 *   enum, default, pattern, min/max lengths and values, minItems, format, title, description) is
 *   the same in 2.0; `deprecated`, `readOnly`, `writeOnly`, `example` are dropped or kept as 2.0 has them;
 * - parameters' `schema` → the parameter's own `type`/`format`/`enum`/… (2.0 puts primitive
 *   parameters' constraints on the parameter);
 * - `requestBody` → one `in: body` parameter, its media types → `consumes`;
 * - responses' `content` → `schema` (the JSON one) and media types → `produces`; response headers'
 *   `schema` → the header's own `type`;
 * - `components.schemas` → `definitions`; `servers` → `host`, `basePath`, `schemes` (given).
 *
 * Constructs ours never emits (callbacks, links, cookie parameters, `not`, `allOf`, several body
 * media types with different schemas, …) throw an error that names where they are.
 */

type Json = Record<string, unknown>;

export interface Swagger2Options {
  host: string;
  basePath?: string;
  schemes?: string[];
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch'] as const;

/** Schema keywords that mean the same in 3.0 and 2.0. */
const SAME = new Set([
  'type', 'format', 'title', 'description', 'default', 'enum', 'pattern', 'multipleOf',
  'maximum', 'exclusiveMaximum', 'minimum', 'exclusiveMinimum', 'maxLength', 'minLength',
  'maxItems', 'minItems', 'maxProperties', 'minProperties', 'required', 'readOnly', 'example',
]);
/** 3.0 keywords with no 2.0 form that only describe: dropped. */
const DROPPED = new Set(['deprecated', 'writeOnly', 'discriminator', 'externalDocs']);
/** Keywords a primitive (non-body) parameter or header takes from its schema. */
const PRIMITIVE = ['type', 'format', 'enum', 'default', 'pattern', 'maximum', 'exclusiveMaximum', 'minimum', 'exclusiveMinimum', 'maxLength', 'minLength', 'maxItems', 'minItems', 'multipleOf'];

function isJson(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function fail(at: string, what: string): never {
  throw new Error(`OpenAPI 3.0 → 2.0: ${what} at ${at} has no 2.0 form this converter knows`);
}

function ref(value: unknown, at: string): string {
  const prefix = '#/components/schemas/';
  if (typeof value !== 'string' || !value.startsWith(prefix)) fail(at, `$ref ${JSON.stringify(value)}`);
  return `#/definitions/${value.slice(prefix.length)}`;
}

/** One alternative of a union, in words, for the description that replaces the union. */
function describeAlternative(s: unknown): string {
  if (!isJson(s)) return 'any value';
  if (typeof s['$ref'] === 'string') return s['$ref'].split('/').pop() ?? 'an object';
  if (Array.isArray(s['enum'])) return s['enum'].map((e) => JSON.stringify(e)).join(' | ');
  if (s['type'] === 'object' && isJson(s['properties'])) {
    const kind = s['properties']['type'];
    if (isJson(kind) && Array.isArray(kind['enum']) && kind['enum'].length === 1) return `an object of type ${JSON.stringify(kind['enum'][0])}`;
    const names = Object.keys(s['properties']);
    return names.length > 0 ? `an object with ${names.join(', ')}` : 'an object';
  }
  return typeof s['type'] === 'string' ? s['type'] : 'any value';
}

/** A 3.0 schema as a 2.0 schema. */
export function schema2(s: unknown, at: string): Json {
  if (!isJson(s)) fail(at, 'a schema that is not an object');
  if ('$ref' in s) return { $ref: ref(s['$ref'], `${at}.$ref`) };
  const union = s['anyOf'] ?? s['oneOf'];
  if (union !== undefined) {
    if (!Array.isArray(union)) fail(at, 'anyOf/oneOf that is not a list');
    const alternatives = [...new Set(union.map(describeAlternative))].join(', or ');
    const own = typeof s['description'] === 'string' ? `${s['description']} ` : '';
    const out: Json = { description: `${own}(One of: ${alternatives}.)` };
    if (s['nullable'] === true) out['x-nullable'] = true;
    if ('default' in s) out['default'] = s['default'];
    return out;
  }
  const out: Json = {};
  for (const [key, value] of Object.entries(s)) {
    if (SAME.has(key) || key.startsWith('x-')) out[key] = value;
    else if (DROPPED.has(key)) continue;
    else if (key === 'nullable') {
      if (value === true) out['x-nullable'] = true;
    } else if (key === 'properties') {
      if (!isJson(value)) fail(`${at}.properties`, 'properties that are not an object');
      out['properties'] = Object.fromEntries(Object.entries(value).map(([name, p]) => [name, schema2(p, `${at}.properties.${name}`)]));
    } else if (key === 'additionalProperties') {
      out['additionalProperties'] = typeof value === 'boolean' ? value : schema2(value, `${at}.additionalProperties`);
    } else if (key === 'items') {
      out['items'] = schema2(value, `${at}.items`);
    } else {
      fail(`${at}.${key}`, `the keyword ${key}`);
    }
  }
  return out;
}

/** A primitive parameter's or header's fields from its 3.0 schema (2.0 has no schema there). */
function primitive(s: unknown, at: string): Json {
  if (!isJson(s)) fail(at, 'a parameter without a schema');
  if ('$ref' in s || s['anyOf'] !== undefined || s['oneOf'] !== undefined || s['type'] === 'object') return { type: 'string' };
  const out: Json = {};
  for (const key of PRIMITIVE) if (key in s) out[key] = s[key];
  if (s['type'] === 'array') out['items'] = primitive(s['items'], `${at}.items`);
  if (out['type'] === undefined) out['type'] = 'string';
  return out;
}

function parameter(p: unknown, at: string): Json {
  if (!isJson(p)) fail(at, 'a parameter that is not an object');
  if ('$ref' in p) fail(at, 'a parameter $ref');
  const where = p['in'];
  if (where !== 'path' && where !== 'query' && where !== 'header') fail(at, `a parameter in ${String(where)}`);
  const out: Json = { name: p['name'], in: where, required: where === 'path' ? true : p['required'] === true };
  if (typeof p['description'] === 'string') out['description'] = p['description'];
  Object.assign(out, primitive(p['schema'], `${at}.schema`));
  for (const [key, value] of Object.entries(p)) if (key.startsWith('x-')) out[key] = value;
  return out;
}

/** The one schema of a content map (2.0 allows one per body or response) and its media types. */
function content(c: unknown, at: string): { schema: Json | undefined; types: string[] } {
  if (c === undefined) return { schema: undefined, types: [] };
  if (!isJson(c)) fail(at, 'content that is not an object');
  const types = Object.keys(c);
  const schemas = types.map((t) => {
    const media = c[t];
    return isJson(media) && media['schema'] !== undefined ? JSON.stringify(media['schema']) : undefined;
  });
  const json = types.find((t) => t === 'application/json') ?? types[0];
  const distinct = new Set(schemas.filter((s) => s !== undefined));
  if (distinct.size > 1 && types.filter((t) => t.endsWith('json')).length > 1) fail(at, 'several JSON media types with different schemas');
  const chosen = json === undefined ? undefined : c[json];
  const schema = isJson(chosen) && chosen['schema'] !== undefined ? schema2(chosen['schema'], `${at}.${json}.schema`) : undefined;
  return { schema, types };
}

function operation(op: unknown, at: string): Json {
  if (!isJson(op)) fail(at, 'an operation that is not an object');
  const out: Json = {};
  const consumes = new Set<string>();
  const produces = new Set<string>();
  const parameters: Json[] = [];
  for (const [key, value] of Object.entries(op)) {
    if (key === 'operationId' || key === 'summary' || key === 'description' || key === 'tags' || key === 'deprecated' || key.startsWith('x-')) out[key] = value;
    else if (key === 'parameters') {
      if (!Array.isArray(value)) fail(`${at}.parameters`, 'parameters that are not a list');
      value.forEach((p, i) => parameters.push(parameter(p, `${at}.parameters[${i}]`)));
    } else if (key === 'requestBody') {
      if (!isJson(value)) fail(`${at}.requestBody`, 'a requestBody that is not an object');
      const body = content(value['content'], `${at}.requestBody.content`);
      body.types.forEach((t) => consumes.add(t));
      parameters.push({ name: 'body', in: 'body', required: value['required'] === true, ...(typeof value['description'] === 'string' ? { description: value['description'] } : {}), schema: body.schema ?? {} });
    } else if (key === 'responses') {
      if (!isJson(value)) fail(`${at}.responses`, 'responses that are not an object');
      out['responses'] = Object.fromEntries(
        Object.entries(value).map(([code, r]) => {
          if (!isJson(r)) fail(`${at}.responses.${code}`, 'a response that is not an object');
          const body = content(r['content'], `${at}.responses.${code}.content`);
          body.types.forEach((t) => produces.add(t));
          const response: Json = { description: typeof r['description'] === 'string' ? r['description'] : code };
          if (body.schema) response['schema'] = body.schema;
          if (r['headers'] !== undefined) {
            if (!isJson(r['headers'])) fail(`${at}.responses.${code}.headers`, 'headers that are not an object');
            response['headers'] = Object.fromEntries(
              Object.entries(r['headers']).map(([name, h]) => {
                if (!isJson(h)) fail(`${at}.responses.${code}.headers.${name}`, 'a header that is not an object');
                return [name, { ...(typeof h['description'] === 'string' ? { description: h['description'] } : {}), ...primitive(h['schema'], `${at}.responses.${code}.headers.${name}`) }];
              }),
            );
          }
          return [code, response];
        }),
      );
    } else {
      fail(`${at}.${key}`, `the operation field ${key}`);
    }
  }
  if (consumes.size > 0) out['consumes'] = [...consumes];
  if (produces.size > 0) out['produces'] = [...produces];
  if (parameters.length > 0) out['parameters'] = parameters;
  return out;
}

/** An OpenAPI 3.0 document (as zod-to-openapi generates ours) as an OpenAPI 2.0 document. */
export function toSwagger2(doc: unknown, options: Swagger2Options): Json {
  if (!isJson(doc) || typeof doc['openapi'] !== 'string' || !doc['openapi'].startsWith('3.0')) throw new Error('OpenAPI 3.0 → 2.0: the input is not an OpenAPI 3.0 document');
  const paths: Json = {};
  for (const [path, item] of Object.entries(isJson(doc['paths']) ? doc['paths'] : {})) {
    if (!isJson(item)) fail(`paths.${path}`, 'a path item that is not an object');
    const out: Json = {};
    for (const [key, value] of Object.entries(item)) {
      if ((METHODS as readonly string[]).includes(key)) out[key] = operation(value, `paths.${path}.${key}`);
      else if (key.startsWith('x-')) out[key] = value;
      else if (key === 'parameters') {
        if (!Array.isArray(value)) fail(`paths.${path}.parameters`, 'parameters that are not a list');
        out['parameters'] = value.map((p, i) => parameter(p, `paths.${path}.parameters[${i}]`));
      } else fail(`paths.${path}.${key}`, `the path item field ${key}`);
    }
    paths[path] = out;
  }
  const components = isJson(doc['components']) ? doc['components'] : {};
  for (const [key, value] of Object.entries(components)) {
    // zod-to-openapi always writes `parameters: {}`; an empty section has nothing to convert.
    if (key !== 'schemas' && !(isJson(value) && Object.keys(value).length === 0)) fail(`components.${key}`, `components.${key}`);
  }
  const schemas = isJson(components['schemas']) ? components['schemas'] : {};
  const out: Json = {
    swagger: '2.0',
    info: doc['info'],
    host: options.host,
    basePath: options.basePath ?? '/',
    schemes: options.schemes ?? ['https'],
    paths,
    definitions: Object.fromEntries(Object.entries(schemas).map(([name, s]) => [name, schema2(s, `components.schemas.${name}`)])),
  };
  if (Array.isArray(doc['tags'])) out['tags'] = doc['tags'];
  return out;
}
