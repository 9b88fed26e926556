// Step 1 of the demo pipeline (a command component): cleans the penguin CSV files.
// inputs.raw_data is a local folder of CSV files; inputs.drop_missing a boolean literal.
// Rows with an empty or "NA" measurement are dropped when drop_missing is true, and kept
// (as they are) otherwise. Writes one cleaned CSV per input file to outputs.clean_data.
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export async function run(inputs, outputs, context) {
  const names = (await readdir(inputs.raw_data, { recursive: true })).filter((n) => n.endsWith('.csv')).sort();
  let kept = 0;
  let dropped = 0;
  for (const name of names) {
    const lines = (await readFile(join(inputs.raw_data, name), 'utf8')).split(/\r?\n/).filter((l) => l.trim() !== '');
    const [header, ...rows] = lines;
    if (header === undefined) continue;
    const out = [header];
    for (const row of rows) {
      const cells = row.split(',');
      if (inputs.drop_missing && cells.some((c) => c.trim() === '' || c.trim() === 'NA')) {
        dropped++;
        continue;
      }
      out.push(row);
      kept++;
    }
    await mkdir(join(outputs.clean_data, name, '..'), { recursive: true });
    await writeFile(join(outputs.clean_data, name), `${out.join('\n')}\n`);
  }
  context.logger.info(`prepare: ${names.length} files, kept ${kept} rows, dropped ${dropped} (drop_missing=${inputs.drop_missing})`);
}
