import { FnHostError } from '../errors.js';

/**
 * ASP.NET-style route templates, as HTTP triggers declare them: `items/{id:int}`,
 * `files/{name}.{ext}`, `orders/{id?}`, `blobs/{*path}`, with the usual constraints.
 */

type Constraint = (value: string) => boolean;

interface Param {
  name: string;
  optional: boolean;
  catchAll: boolean;
  defaultValue: string | undefined;
  constraints: Constraint[];
}

export interface CompiledRoute {
  template: string;
  regex: RegExp;
  params: Param[];
  /** Higher sorts first: literal segments beat parameters, which beat catch-alls. */
  precedence: number;
}

const GUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

function numberArgs(args: string, count: number, name: string): number[] {
  const values = args.split(',').map((a) => Number(a.trim()));
  if (values.length !== count || values.some((v) => !Number.isFinite(v))) {
    throw new FnHostError('ERR_APP_LOAD', `Route constraint "${name}(${args})" needs ${count} number(s).`);
  }
  return values;
}

function constraintFor(spec: string): Constraint {
  const m = /^([a-zA-Z]+)(?:\((.*)\))?$/s.exec(spec);
  if (!m) throw new FnHostError('ERR_APP_LOAD', `Unknown route constraint "${spec}".`);
  const name = (m[1] ?? '').toLowerCase();
  const args = m[2] ?? '';
  switch (name) {
    case 'int':
    case 'long':
      return (v) => /^-?\d+$/.test(v);
    case 'bool':
      return (v) => /^(true|false)$/i.test(v);
    case 'decimal':
    case 'double':
    case 'float':
      return (v) => v.trim() !== '' && Number.isFinite(Number(v));
    case 'datetime':
      return (v) => !Number.isNaN(Date.parse(v));
    case 'guid':
      return (v) => GUID.test(v);
    case 'alpha':
      return (v) => /^[a-z]+$/i.test(v);
    case 'minlength': {
      const [n] = numberArgs(args, 1, name) as [number];
      return (v) => v.length >= n;
    }
    case 'maxlength': {
      const [n] = numberArgs(args, 1, name) as [number];
      return (v) => v.length <= n;
    }
    case 'length': {
      const parts = args.split(',');
      if (parts.length === 1) {
        const [n] = numberArgs(args, 1, name) as [number];
        return (v) => v.length === n;
      }
      const [lo, hi] = numberArgs(args, 2, name) as [number, number];
      return (v) => v.length >= lo && v.length <= hi;
    }
    case 'min': {
      const [n] = numberArgs(args, 1, name) as [number];
      return (v) => /^-?\d+$/.test(v) && Number(v) >= n;
    }
    case 'max': {
      const [n] = numberArgs(args, 1, name) as [number];
      return (v) => /^-?\d+$/.test(v) && Number(v) <= n;
    }
    case 'range': {
      const [lo, hi] = numberArgs(args, 2, name) as [number, number];
      return (v) => /^-?\d+$/.test(v) && Number(v) >= lo && Number(v) <= hi;
    }
    case 'regex': {
      let re: RegExp;
      try {
        re = new RegExp(args, 'i');
      } catch (err) {
        throw new FnHostError('ERR_APP_LOAD', `Route constraint regex(${args}) is not a valid pattern.`, { cause: err });
      }
      return (v) => re.test(v);
    }
    default:
      throw new FnHostError('ERR_APP_LOAD', `Unknown route constraint "${spec}".`);
  }
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Splits "{name:int:min(1)}" style constraints, keeping parentheses intact. */
function splitConstraints(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ':' && depth === 0) {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  parts.push(current);
  return parts;
}

function parseParam(body: string, template: string): Param {
  let text = body;
  const catchAll = text.startsWith('*');
  if (catchAll) text = text.replace(/^\*+/, '');
  let defaultValue: string | undefined;
  const eq = text.indexOf('=');
  if (eq >= 0 && !text.substring(0, eq).includes('(')) {
    defaultValue = text.substring(eq + 1);
    text = text.substring(0, eq);
  }
  let optional = false;
  if (text.endsWith('?')) {
    optional = true;
    text = text.slice(0, -1);
  }
  const [name, ...specs] = splitConstraints(text);
  if (!name || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    throw new FnHostError('ERR_APP_LOAD', `Route "${template}" has an invalid parameter "{${body}}".`);
  }
  return {
    name,
    optional: optional || defaultValue !== undefined || catchAll,
    catchAll,
    defaultValue,
    constraints: specs.map(constraintFor),
  };
}

/** Compiles a route template (without the route prefix). */
export function compileRoute(template: string): CompiledRoute {
  const clean = template.replace(/^\/+|\/+$/g, '');
  const params: Param[] = [];
  let pattern = '^';
  let precedence = 0;
  const segments = clean === '' ? [] : clean.split('/');
  segments.forEach((segment, index) => {
    const pieces: { literal?: string; param?: Param }[] = [];
    const re = /\{([^{}]*(?:\([^)]*\))?[^{}]*)\}/g;
    let last = 0;
    for (let m = re.exec(segment); m; m = re.exec(segment)) {
      if (m.index > last) pieces.push({ literal: segment.substring(last, m.index) });
      pieces.push({ param: parseParam(m[1] ?? '', template) });
      last = m.index + m[0].length;
    }
    if (last < segment.length) pieces.push({ literal: segment.substring(last) });
    const onlyParam = pieces.length === 1 && pieces[0]?.param;
    let seg = '';
    for (const piece of pieces) {
      if (piece.literal !== undefined) {
        seg += escapeRegex(piece.literal);
        precedence += 100;
      } else if (piece.param) {
        params.push(piece.param);
        if (piece.param.catchAll) {
          seg += '(.*)';
        } else {
          seg += pieces.length === 1 ? '([^/]+)' : '([^/]+?)';
          precedence += piece.param.constraints.length > 0 ? 20 : 10;
        }
      }
    }
    const prefix = index === 0 ? '' : '/';
    if (onlyParam && onlyParam.optional) {
      pattern += `(?:${prefix}${seg})?`;
    } else {
      pattern += prefix + seg;
    }
  });
  pattern += '/?$';
  return { template: clean, regex: new RegExp(pattern, 'i'), params, precedence };
}

/** Matches a path (without the route prefix, not URL-decoded) and returns the route values. */
export function matchRoute(route: CompiledRoute, path: string): Record<string, string> | undefined {
  const clean = path.replace(/^\/+/, '');
  const m = route.regex.exec(clean);
  if (!m) return undefined;
  const values: Record<string, string> = {};
  for (let i = 0; i < route.params.length; i++) {
    const param = route.params[i] as Param;
    const raw = m[i + 1];
    if (raw === undefined || raw === '') {
      if (!param.optional) return undefined;
      if (param.defaultValue !== undefined) values[param.name] = param.defaultValue;
      continue;
    }
    let value: string;
    try {
      value = decodeURIComponent(raw);
    } catch {
      return undefined;
    }
    if (!param.constraints.every((c) => c(value))) return undefined;
    values[param.name] = value;
  }
  return values;
}
