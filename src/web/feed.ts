import type { Redis } from 'ioredis';
import type { EventBus, LabvirtEvent } from '../events/index.js';

export interface FeedEntry {
  at: string;
  event: LabvirtEvent;
}

export interface EventFeed {
  /** The latest entries, oldest first. */
  recent(): FeedEntry[];
  /** Every replica's events as they arrive; returns the unsubscribe function. */
  subscribe(listener: (entry: FeedEntry) => void): () => void;
  close(): Promise<void>;
}

/**
 * The operators' live feed: each replica publishes its own events on a Redis
 * channel once, and every replica's dashboard hears all of them from there
 * (its own included), so the feed is the same whichever replica serves it.
 */
export async function linkEventFeed(options: {
  events: EventBus;
  publisher: Redis;
  /** A connection of its own: a subscribed connection can do nothing else. */
  subscriber: Redis;
  channel: string;
  keep?: number;
}): Promise<EventFeed> {
  const { publisher, subscriber, channel } = options;
  const keep = options.keep ?? 100;
  const recent: FeedEntry[] = [];
  const listeners = new Set<(entry: FeedEntry) => void>();
  subscriber.on('message', (from: string, text: string) => {
    if (from !== channel) return;
    let entry: FeedEntry;
    try {
      entry = JSON.parse(text) as FeedEntry;
    } catch {
      return;
    }
    recent.push(entry);
    if (recent.length > keep) recent.shift();
    for (const l of listeners) l(entry);
  });
  await subscriber.subscribe(channel);
  const off = options.events.onAny((event) => {
    const entry: FeedEntry = { at: new Date().toISOString(), event };
    void publisher.publish(channel, JSON.stringify(entry)).catch(() => undefined);
  });
  return {
    recent: () => [...recent],
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close() {
      off();
      listeners.clear();
      subscriber.disconnect();
    },
  };
}
