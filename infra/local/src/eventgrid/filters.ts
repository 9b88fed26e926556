import type { AdvancedFilter, EventFilter } from './settings.js';

/**
 * Event subscription filters, evaluated as Event Grid evaluates them on the event in the
 * subscription's delivery schema: event types, subject prefix and suffix, and advanced filters
 * on any field (`data.api`, `subject`, `type`, …). String comparisons ignore case, as Event Grid's
 * do (the subject filters too, unless `isSubjectCaseSensitive`).
 */

export type EventRecord = Record<string, unknown>;

function isRecord(v: unknown): v is EventRecord {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The value at a dotted key (`data.api`); a name that is not there exactly is looked up ignoring case. */
export function valueAt(event: EventRecord, key: string): unknown {
  let current: unknown = event;
  for (const part of key.split('.')) {
    if (!isRecord(current)) return undefined;
    if (part in current) {
      current = current[part];
      continue;
    }
    const lower = part.toLowerCase();
    const found = Object.keys(current).find((k) => k.toLowerCase() === lower);
    current = found === undefined ? undefined : current[found];
  }
  return current;
}

function eventTypeOf(event: EventRecord): unknown {
  return 'specversion' in event ? event['type'] : event['eventType'];
}

const lower = (s: string): string => s.toLowerCase();

/** Whether one value (not an array) passes one advanced filter. */
function passesOne(filter: AdvancedFilter, value: unknown): boolean {
  switch (filter.operatorType) {
    case 'IsNullOrUndefined':
      return value === null || value === undefined;
    case 'IsNotNull':
      return value !== null && value !== undefined;
    case 'BoolEquals':
      return typeof value === 'boolean' && value === filter.value;
    case 'NumberIn':
    case 'NumberNotIn': {
      const inList = typeof value === 'number' && filter.values.includes(value);
      return filter.operatorType === 'NumberIn' ? inList : !inList;
    }
    case 'NumberLessThan':
      return typeof value === 'number' && value < filter.value;
    case 'NumberGreaterThan':
      return typeof value === 'number' && value > filter.value;
    case 'NumberLessThanOrEquals':
      return typeof value === 'number' && value <= filter.value;
    case 'NumberGreaterThanOrEquals':
      return typeof value === 'number' && value >= filter.value;
    case 'NumberInRange':
    case 'NumberNotInRange': {
      const inRange = typeof value === 'number' && filter.values.some(([lo, hi]) => value >= lo && value <= hi);
      return filter.operatorType === 'NumberInRange' ? inRange : !inRange;
    }
    default: {
      // String operators. A value that is not a string never matches a positive operator, and
      // always passes a negated one (it is not "in" the list, does not begin with it, …).
      const text = typeof value === 'string' ? lower(value) : undefined;
      const values = filter.values.map(lower);
      const test = (v: string): boolean => {
        if (text === undefined) return false;
        switch (filter.operatorType) {
          case 'StringIn':
          case 'StringNotIn':
            return text === v;
          case 'StringBeginsWith':
          case 'StringNotBeginsWith':
            return text.startsWith(v);
          case 'StringEndsWith':
          case 'StringNotEndsWith':
            return text.endsWith(v);
          default:
            return text.includes(v);
        }
      };
      const any = values.some(test);
      return filter.operatorType.startsWith('StringNot') ? !any : any;
    }
  }
}

/**
 * Whether `value` passes an advanced filter. An array value is matched element by element (any
 * element passing is enough) only with `enableAdvancedFilteringOnArrays`; otherwise an array is
 * one value that matches no positive operator, as in Event Grid.
 */
export function passesAdvancedFilter(filter: AdvancedFilter, value: unknown, onArrays: boolean): boolean {
  if (Array.isArray(value) && onArrays) return value.some((v) => passesOne(filter, v));
  return passesOne(filter, value);
}

/** Whether `event` (in the subscription's delivery schema) passes every condition of `filter`. */
export function matchesFilter(filter: EventFilter, event: EventRecord): boolean {
  if (filter.includedEventTypes) {
    const type = eventTypeOf(event);
    if (typeof type !== 'string' || !filter.includedEventTypes.some((t) => lower(t) === lower(type))) return false;
  }
  const subjectValue = event['subject'];
  const subject = typeof subjectValue === 'string' ? subjectValue : '';
  const caseSensitive = filter.isSubjectCaseSensitive === true;
  const norm = (s: string): string => (caseSensitive ? s : lower(s));
  if (filter.subjectBeginsWith && !norm(subject).startsWith(norm(filter.subjectBeginsWith))) return false;
  if (filter.subjectEndsWith && !norm(subject).endsWith(norm(filter.subjectEndsWith))) return false;
  const onArrays = filter.enableAdvancedFilteringOnArrays === true;
  return (filter.advancedFilters ?? []).every((f) => passesAdvancedFilter(f, valueAt(event, f.key), onArrays));
}
