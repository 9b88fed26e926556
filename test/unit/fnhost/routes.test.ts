import { describe, expect, it } from 'vitest';
import { compileRoute, matchRoute } from '../../../infra/local/src/http/routes.js';

const match = (template: string, path: string): Record<string, string> | undefined => matchRoute(compileRoute(template), path);

describe('route templates', () => {
  it('matches literals case-insensitively and captures parameters', () => {
    expect(match('Products/{id}', 'products/42')).toEqual({ id: '42' });
    expect(match('products/{id}', 'products')).toBeUndefined();
    expect(match('products/{id}', 'products/1/2')).toBeUndefined();
    expect(match('products/{id}', 'products/42/')).toEqual({ id: '42' });
  });

  it('applies constraints', () => {
    expect(match('items/{id:int}', 'items/7')).toEqual({ id: '7' });
    expect(match('items/{id:int}', 'items/x')).toBeUndefined();
    expect(match('items/{id:int:min(10)}', 'items/7')).toBeUndefined();
    expect(match('items/{id:range(1,5)}', 'items/5')).toEqual({ id: '5' });
    expect(match('items/{name:alpha}', 'items/abc')).toEqual({ name: 'abc' });
    expect(match('items/{name:length(2,3)}', 'items/abcd')).toBeUndefined();
    expect(match('items/{id:guid}', 'items/0b5c0b5c-1111-2222-3333-444455556666')).toBeDefined();
    expect(match('items/{flag:bool}', 'items/True')).toEqual({ flag: 'True' });
    expect(match('items/{code:regex(^ab\\d+$)}', 'items/ab12')).toEqual({ code: 'ab12' });
  });

  it('supports optional, default and catch-all parameters', () => {
    expect(match('orders/{id?}', 'orders')).toEqual({});
    expect(match('orders/{id?}', 'orders/9')).toEqual({ id: '9' });
    expect(match('orders/{status=open}', 'orders')).toEqual({ status: 'open' });
    expect(match('files/{*path}', 'files/a/b/c.txt')).toEqual({ path: 'a/b/c.txt' });
    expect(match('files/{*path}', 'files')).toEqual({});
  });

  it('decodes captured values and handles several parameters in one segment', () => {
    expect(match('docs/{name}.{ext}', 'docs/read%20me.md')).toEqual({ name: 'read me', ext: 'md' });
    expect(match('docs/{name}.{ext}', 'docs/archive.tar.gz')).toEqual({ name: 'archive', ext: 'tar.gz' });
  });

  it('ranks literal routes above parameters and catch-alls', () => {
    const literal = compileRoute('items/special').precedence;
    const param = compileRoute('items/{id}').precedence;
    const constrained = compileRoute('items/{id:int}').precedence;
    const catchAll = compileRoute('items/{*rest}').precedence;
    expect(literal).toBeGreaterThan(constrained);
    expect(constrained).toBeGreaterThan(param);
    expect(param).toBeGreaterThan(catchAll);
  });

  it('rejects unknown constraints when the app loads', () => {
    expect(() => compileRoute('items/{id:bogus}')).toThrow(/Unknown route constraint/);
  });
});
