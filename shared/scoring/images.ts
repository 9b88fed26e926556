/**
 * Images for the built-in ONNX runner: decoding PNG/JPEG, nearest-neighbour resizing to the model's
 * declared size, and laying pixels out as the model's 4-D input expects.
 */
import jpeg from 'jpeg-js';
import pngjs from 'pngjs';
import type { ImageFormat } from '../data/records.js';

export interface DecodedImage {
  width: number;
  height: number;
  /** 8-bit RGBA, row-major. */
  rgba: Uint8Array;
}

/** Decodes a PNG or JPEG file's bytes to RGBA; the error names the format it expected. */
export function decodeImage(data: Buffer, kind: ImageFormat): DecodedImage {
  try {
    if (kind === 'png') {
      const png = pngjs.PNG.sync.read(data);
      return { width: png.width, height: png.height, rgba: new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.length) };
    }
    // The default limits (100 MP, 512 MB) stop a hostile file from exhausting the worker.
    const img = jpeg.decode(data, { useTArray: true, formatAsRGBA: true });
    return { width: img.width, height: img.height, rgba: img.data };
  } catch (err) {
    throw new Error(`could not decode the image as ${kind.toUpperCase()}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Where the channels are in a 4-D image input, and the sizes it fixes (undefined when symbolic). */
export interface ImageLayout {
  layout: 'nchw' | 'nhwc';
  channels: number;
  height: number | undefined;
  width: number | undefined;
}

function fixed(dim: number | string | undefined): number | undefined {
  return typeof dim === 'number' && dim > 0 ? dim : undefined;
}

/**
 * Reads the layout off a declared input shape: `[N,C,H,W]` when dim 1 is 1 or 3, else `[N,H,W,C]`
 * (a symbolic channel count there means RGB). Returns an error text for shapes that are not images.
 */
export function imageLayout(shape: readonly (number | string)[]): ImageLayout | string {
  if (shape.length !== 4) return `expected a 4-D image input ([N,C,H,W] or [N,H,W,C]), the model declares [${shape.join(',')}]`;
  const [, d1, d2, d3] = shape;
  let layout: ImageLayout;
  if (d1 === 1 || d1 === 3) layout = { layout: 'nchw', channels: d1, height: fixed(d2), width: fixed(d3) };
  else layout = { layout: 'nhwc', channels: fixed(d3) ?? 3, height: fixed(d1), width: fixed(d2) };
  if (![1, 3, 4].includes(layout.channels)) return `the image input has ${layout.channels} channels; 1 (grey), 3 (RGB) or 4 (RGBA) are supported`;
  return layout;
}

/**
 * One image as one row of a 4-D input: resized (nearest neighbour) to height x width, channels
 * in the layout's order. With `scale` the values are in [0,1] (float inputs), else 0-255 (uint8).
 */
export function imageRow(image: DecodedImage, layout: ImageLayout, height: number, width: number, scale: boolean): number[] {
  const { channels } = layout;
  const out = new Array<number>(channels * height * width);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(image.height - 1, Math.floor(((y + 0.5) * image.height) / height));
    for (let x = 0; x < width; x++) {
      const sx = Math.min(image.width - 1, Math.floor(((x + 0.5) * image.width) / width));
      const p = (sy * image.width + sx) * 4;
      const r = image.rgba[p] ?? 0;
      const g = image.rgba[p + 1] ?? 0;
      const b = image.rgba[p + 2] ?? 0;
      const a = image.rgba[p + 3] ?? 255;
      // Grey uses the ITU-R BT.601 luma weights, as most image libraries do.
      const values = channels === 1 ? [Math.round(0.299 * r + 0.587 * g + 0.114 * b)] : channels === 3 ? [r, g, b] : [r, g, b, a];
      for (let c = 0; c < channels; c++) {
        const index = layout.layout === 'nchw' ? (c * height + y) * width + x : (y * width + x) * channels + c;
        out[index] = scale ? (values[c] ?? 0) / 255 : (values[c] ?? 0);
      }
    }
  }
  return out;
}
