import { describe, expect, it } from 'vitest';
import { decodeImage, imageLayout, imageRow } from '../../../shared/scoring/images.js';

describe('image inputs', () => {
  it('reads the layout from the declared shape', () => {
    expect(imageLayout(['N', 3, 224, 224])).toEqual({ layout: 'nchw', channels: 3, height: 224, width: 224 });
    expect(imageLayout(['N', 1, 'h', 'w'])).toEqual({ layout: 'nchw', channels: 1, height: undefined, width: undefined });
    expect(imageLayout([1, 28, 28, 1])).toEqual({ layout: 'nhwc', channels: 1, height: 28, width: 28 });
    expect(imageLayout(['N', 'h', 'w', 'c'])).toEqual({ layout: 'nhwc', channels: 3, height: undefined, width: undefined });
    expect(imageLayout(['N', 4])).toMatch(/4-D image input/);
    expect(imageLayout(['N', 8, 8, 5])).toMatch(/5 channels/);
  });

  it('resizes by nearest neighbour and scales to [0,1] in either layout', () => {
    // 2x2 image: red, green / blue, white.
    const rgba = Uint8Array.from([255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 255, 255, 255, 255]);
    const image = { width: 2, height: 2, rgba };
    const nchw = imageRow(image, { layout: 'nchw', channels: 3, height: 4, width: 4 }, 4, 4, true);
    expect(nchw).toHaveLength(48);
    // Channel R, row 0: red red green green.
    expect(nchw.slice(0, 4)).toEqual([1, 1, 0, 0]);
    // Channel B, row 3: blue blue white white.
    expect(nchw.slice(32 + 12, 32 + 16)).toEqual([1, 1, 1, 1]);
    const nhwc = imageRow(image, { layout: 'nhwc', channels: 3, height: 1, width: 2 }, 1, 2, false);
    // One row sampled from y=1: blue, white (0-255 for uint8 inputs).
    expect(nhwc).toEqual([0, 0, 255, 255, 255, 255]);
    const grey = imageRow(image, { layout: 'nchw', channels: 1, height: 2, width: 2 }, 2, 2, false);
    expect(grey).toEqual([76, 150, 29, 255]);
  });

  it('explains an image it cannot decode', () => {
    expect(() => decodeImage(Buffer.from('not an image'), 'png')).toThrow(/could not decode the image as PNG/);
    expect(() => decodeImage(Buffer.from('not an image'), 'jpeg')).toThrow(/could not decode the image as JPEG/);
  });
});
