/**
 * Starts `tasks` in order, at most `atOnce` running at any time, and returns their promises in the
 * same order: the first ones settle first, and a list of thousands never runs thousands at once.
 */
export function inOrderAtMost<T>(tasks: readonly (() => Promise<T>)[], atOnce: number): Promise<T>[] {
  let free = Math.max(1, Math.floor(atOnce));
  const waiting: (() => void)[] = [];
  const turn = async (): Promise<void> => {
    if (free > 0) free--;
    else await new Promise<void>((resolve) => waiting.push(resolve));
  };
  const done = (): void => {
    const next = waiting.shift();
    if (next) next();
    else free++;
  };
  return tasks.map(async (task) => {
    await turn();
    try {
      return await task();
    } finally {
      done();
    }
  });
}
