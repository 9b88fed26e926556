import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_REQUEST_BODY_BYTES, requestBodyLimit } from '../../../infra/local/src/http/request-body.js';

describe('requestBodyLimit (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT)', () => {
  it('is the host default of 104857600 bytes when the setting is missing or not a whole number', () => {
    expect(DEFAULT_MAX_REQUEST_BODY_BYTES).toBe(104_857_600);
    for (const value of [undefined, '', 'abc', '10MB', '1.5', '-1', '1e6', '99999999999999999999']) {
      expect(requestBodyLimit(value === undefined ? {} : { FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: value })).toBe(104_857_600);
    }
  });

  it('takes a whole number of bytes, as the host parses it', () => {
    expect(requestBodyLimit({ FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: '1024' })).toBe(1024);
    expect(requestBodyLimit({ FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: ' 209715200 ' })).toBe(209_715_200);
    expect(requestBodyLimit({ FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: '0' })).toBe(0);
  });
});
