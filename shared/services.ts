import type { PipelineComponentDoc } from './components/types.js';
import { type AppConfig, loadConfig } from './config.js';
import { Authenticator } from './auth/authenticate.js';
import { RateLimiter } from './limits.js';
import { JobEventsDispatcher } from './events/dispatcher.js';
import { EventGridPublisher } from './events/publisher.js';
import { JobRunner } from './jobs/job-runner.js';
import { JobStore } from './jobs/job-store.js';
import { JobsService } from './jobs/jobs-service.js';
import { PipelineRunner } from './jobs/pipeline-runner.js';
import { JobWorkArea } from './jobs/work-area.js';
import { Registry } from './registry/registry.js';
import { TriggerRules } from './registry/triggers.js';
import { TriggerService } from './triggers/trigger-service.js';
import { createScoringRuntime } from './scoring/runtime.js';
import type { ScoringRuntime } from './scoring/types.js';

/** The app's services, built once per process from the configuration (the composition root). */
export interface Services {
  config: AppConfig;
  registry: Registry;
  jobs: JobsService;
  store: JobStore;
  runner: JobRunner;
  pipelines: PipelineRunner;
  runtime: ScoringRuntime;
  /** Publishes job events; undefined when they are off (BATCH_EVENTS_TOPIC_ENDPOINT unset). */
  events: JobEventsDispatcher | undefined;
  /** Blob-created trigger rules (the resource) and what events and closed batches do. */
  triggerRules: TriggerRules;
  triggers: TriggerService;
  /** Who calls the API and what they may do (BATCH_AUTH_MODE). */
  auth: Authenticator;
  /** Invokes per caller (POST …/jobs, POST /api/jobs): in memory, per host instance. */
  invokeRate: RateLimiter;
}

let built: Services | undefined;

export function services(): Services {
  if (!built) {
    const config = loadConfig();
    const store = new JobStore({ config });
    const events = config.events ? new JobEventsDispatcher({ store, publisher: new EventGridPublisher(config.events) }) : undefined;
    if (events) store.onEventsRecorded((jobId) => events.kick(jobId));
    // A deployment made from a pipeline job (job_definition) reads that job's graph.
    const registry: Registry = new Registry({ config, jobDefinition: (jobId: string, field: string): Promise<PipelineComponentDoc> => jobs.definitionOf(jobId, field) });
    const workArea = new JobWorkArea({ config });
    const jobs: JobsService = new JobsService({ config, registry, store, workArea });
    const runtime = createScoringRuntime({ youngGenerationMb: config.scoringYoungGenerationMb });
    const triggerRules = new TriggerRules({ config, registry });
    built = {
      auth: new Authenticator(config.auth),
      triggerRules,
      triggers: new TriggerService({ config, registry, rules: triggerRules, jobs }),
      config,
      registry,
      store,
      runtime,
      jobs,
      events,
      runner: new JobRunner({ config, registry, store, workArea, runtime }),
      pipelines: new PipelineRunner({ config, registry, store }),
      invokeRate: new RateLimiter({ ratePerMinute: config.limits.invokeRatePerMinute, burst: config.limits.invokeBurst }),
    };
  }
  return built;
}
