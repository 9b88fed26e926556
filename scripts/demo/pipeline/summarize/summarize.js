// Step 3 of the demo pipeline (a command component): counts the predicted classes.
// inputs.predictions is the scoring step's output folder: predictions.csv (no header, as in
// Azure ML) and job.json, whose `columns` name predictions.csv's columns. Writes summary.json
// ({ rows, classes: { Adelie: n, ... } }) to outputs.summary.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** One CSV line's cells (quoted cells may hold commas and doubled quotes). */
function cells(line) {
  const out = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') (cell += '"'), i++;
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') out.push(cell), (cell = '');
    else cell += c;
  }
  out.push(cell);
  return out;
}

export async function run(inputs, outputs, context) {
  const job = JSON.parse(await readFile(join(inputs.predictions, 'job.json'), 'utf8'));
  const at = (job.columns ?? []).indexOf(inputs.class_column);
  if (at < 0) throw new Error(`predictions have no column '${inputs.class_column}' (columns: ${(job.columns ?? []).join(', ')})`);
  const text = await readFile(join(inputs.predictions, job.settings?.output_file_name ?? 'predictions.csv'), 'utf8');
  const classes = {};
  let rows = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const value = cells(line)[at] ?? '';
    classes[value] = (classes[value] ?? 0) + 1;
    rows++;
  }
  const sorted = Object.fromEntries(Object.entries(classes).sort(([a], [b]) => a.localeCompare(b)));
  await writeFile(join(outputs.summary, 'summary.json'), `${JSON.stringify({ rows, classes: sorted }, null, 2)}\n`);
  context.logger.info(`summarize: ${rows} predictions, ${Object.keys(sorted).length} classes`);
}
