// The benchmark app for `npm run bench:host`: fan-out/fan-in shapes over no-op and CPU-bound activities.
import * as df from 'durable-functions';
import { burn } from './burn.js';

df.app.activity('noop', { handler: (i) => i });
df.app.activity('burn', { handler: (ms) => burn(ms) });

df.app.orchestration('fanOutNoop', function* (context) {
  const { n } = context.df.getInput();
  const tasks = [];
  for (let i = 0; i < n; i++) tasks.push(context.df.callActivity('noop', i));
  const results = yield context.df.Task.all(tasks);
  return results.length;
});

df.app.orchestration('fanOutBurn', function* (context) {
  const { n, ms } = context.df.getInput();
  const tasks = [];
  for (let i = 0; i < n; i++) tasks.push(context.df.callActivity('burn', ms));
  const results = yield context.df.Task.all(tasks);
  return results.length;
});

df.app.orchestration('subOrchestrations', function* (context) {
  const { children, perChild } = context.df.getInput();
  const tasks = [];
  for (let i = 0; i < children; i++) tasks.push(context.df.callSubOrchestrator('fanOutNoop', { n: perChild }));
  const results = yield context.df.Task.all(tasks);
  return results.reduce((a, b) => a + b, 0);
});
