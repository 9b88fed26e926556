import { z } from 'zod';

/**
 * The `EventGrid` section of local.settings.json: fnhost's stand-ins for Event Grid resources.
 * Subscriptions take the names of an event subscription's ARM properties (`filter`,
 * `eventDeliverySchema`, `retryPolicy`), so what is declared here reads like what infra/azure/
 * creates. Objects are strict: a misspelt property is an error naming it rather than a filter
 * silently not applied.
 */

// Event Grid's own rules for topic and subscription names. They also keep the environment names
// made from topic names (FNHOST_EVENTGRID_<TOPIC>_…) apart: "-" is the only character replaced.
const topicName = z.string().regex(/^[A-Za-z0-9-]{3,50}$/, 'use 3-50 letters, digits or "-"');
const name = z.string().regex(/^[A-Za-z0-9-]{3,64}$/, 'use 3-64 letters, digits or "-"');

export const deliverySchemas = ['EventGridSchema', 'CloudEventSchemaV1_0'] as const;
export type DeliverySchema = (typeof deliverySchemas)[number];

const stringOperators = [
  'StringIn',
  'StringNotIn',
  'StringBeginsWith',
  'StringNotBeginsWith',
  'StringEndsWith',
  'StringNotEndsWith',
  'StringContains',
  'StringNotContains',
] as const;
const numberListOperators = ['NumberIn', 'NumberNotIn'] as const;
const numberOperators = ['NumberLessThan', 'NumberGreaterThan', 'NumberLessThanOrEquals', 'NumberGreaterThanOrEquals'] as const;
const rangeOperators = ['NumberInRange', 'NumberNotInRange'] as const;
const presenceOperators = ['IsNullOrUndefined', 'IsNotNull'] as const;

const key = z.string().min(1);

/** An advanced filter, as ARM's `advancedFilters` items (each operator with the value shape it takes). */
export const advancedFilterSchema = z.discriminatedUnion('operatorType', [
  z.strictObject({ operatorType: z.enum(stringOperators), key, values: z.array(z.string()).min(1).max(25) }),
  z.strictObject({ operatorType: z.enum(numberListOperators), key, values: z.array(z.number()).min(1).max(25) }),
  z.strictObject({ operatorType: z.enum(numberOperators), key, value: z.number() }),
  z.strictObject({
    operatorType: z.enum(rangeOperators),
    key,
    values: z
      .array(z.tuple([z.number(), z.number()]))
      .min(1)
      .max(25)
      .refine((ranges) => ranges.every(([lo, hi]) => lo <= hi), 'each range is [low, high] with low <= high'),
  }),
  z.strictObject({ operatorType: z.literal('BoolEquals'), key, value: z.boolean() }),
  z.strictObject({ operatorType: z.enum(presenceOperators), key }),
]);
export type AdvancedFilter = z.infer<typeof advancedFilterSchema>;

/** ARM's `filter`: every condition given must hold. */
export const filterSchema = z.strictObject({
  includedEventTypes: z.array(z.string().min(1)).min(1).optional(),
  subjectBeginsWith: z.string().optional(),
  subjectEndsWith: z.string().optional(),
  isSubjectCaseSensitive: z.boolean().optional(),
  // Event Grid allows 25 advanced filter values in all per subscription; fnhost only bounds the list.
  advancedFilters: z.array(advancedFilterSchema).max(25).optional(),
  enableAdvancedFilteringOnArrays: z.boolean().optional(),
});
export type EventFilter = z.infer<typeof filterSchema>;

/** ARM's `retryPolicy`, with Event Grid's limits and defaults. */
export const retryPolicySchema = z.strictObject({
  maxDeliveryAttempts: z.number().int().min(1).max(30).default(30),
  eventTimeToLiveInMinutes: z.number().int().min(1).max(1440).default(1440),
});
export type RetryPolicy = z.infer<typeof retryPolicySchema>;

const subscriptionCommon = {
  name,
  eventDeliverySchema: z.enum(deliverySchemas).default('EventGridSchema'),
  filter: filterSchema.default({}),
  retryPolicy: retryPolicySchema.default({ maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }),
};

/** A subscription of the storage account's system topic to one of the app's Event Grid functions. */
export const storageSubscriptionSchema = z.strictObject({
  ...subscriptionCommon,
  /** The `app.eventGrid` function the events go to (ARM: an AzureFunction destination). */
  function: z.string().min(1),
});
export type StorageSubscription = z.infer<typeof storageSubscriptionSchema>;

/** A webhook subscription of a custom topic. */
export const webhookSubscriptionSchema = z.strictObject({
  ...subscriptionCommon,
  /**
   * ARM: a WebHook destination's `endpointUrl`. `%NAME%` parts are app settings (as in binding
   * properties), so a port chosen at run time can be passed in; the result must be an http(s) URL.
   */
  endpoint: z.string().min(1),
});
export type WebhookSubscription = z.infer<typeof webhookSubscriptionSchema>;

export const topicSchema = z.strictObject({
  name: topicName,
  /** The access key publishers send in `aeg-sas-key`; generated (and kept in the data folder) when left out. */
  key: z.string().min(8).optional(),
  subscriptions: z.array(webhookSubscriptionSchema).default([]),
});
export type TopicSettings = z.infer<typeof topicSchema>;

function unique<T>(items: T[], of: (item: T) => string): boolean {
  const seen = new Set(items.map((i) => of(i).toLowerCase()));
  return seen.size === items.length;
}

export const eventGridSettingsSchema = z
  .strictObject({
    /**
     * Event Grid's retry schedule (10 s, 30 s, 1 min, 5 min, …) multiplied by this, so that a
     * local run sees retries in seconds rather than hours. 1 is Event Grid's own timing.
     */
    retryDelayScale: z.number().positive().max(1).default(0.01),
    storageSubscriptions: z
      .array(storageSubscriptionSchema)
      .default([])
      .refine((subs) => unique(subs, (s) => s.name), 'subscription names must be unique'),
    topics: z
      .array(
        topicSchema.refine((t) => unique(t.subscriptions, (s) => s.name), { message: 'subscription names must be unique within a topic', path: ['subscriptions'] }),
      )
      .default([])
      .refine((topics) => unique(topics, (t) => t.name), 'topic names must be unique'),
  })
  .prefault({});
export type EventGridSettings = z.infer<typeof eventGridSettingsSchema>;
