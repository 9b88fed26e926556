// Burns `ms` milliseconds of CPU on the calling thread; the benchmark's unit of real work.
export function burn(ms) {
  const end = process.hrtime.bigint() + BigInt(Math.round(ms * 1e6));
  let x = 0;
  while (process.hrtime.bigint() < end) x += Math.sqrt(x + 1);
  return x > 0 ? ms : 0;
}
