/**
 * Job events (shared/events/): the sweep that publishes events a process left behind (it crashed,
 * or the topic was down for longer than its retries). Events are otherwise published by the
 * process that recorded them, as soon as they are recorded. Does nothing while events are off.
 */
import azureFunctions from '@azure/functions';
import { loadConfig } from '../shared/config.js';
import { services } from '../shared/services.js';

const { app } = azureFunctions;

app.timer('jobEventsSweep', {
  schedule: '0 */1 * * * *',
  handler: async (_timer, context) => {
    if (!loadConfig().events) return;
    const events = services().events;
    if (!events) return;
    const result = await events.sweep();
    if (result.published > 0 || result.failed > 0) context.log(`job events sweep: ${result.published} published, ${result.failed} job(s) still waiting`);
  },
});
