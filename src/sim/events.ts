import { randomBytes } from 'node:crypto';
import { timestamp, type Obj, type ObjectStore } from './store.js';

/**
 * core/v1 Events as the cluster's controllers record them (client-go's
 * event recorder): named `<object>.<hex>`, about an involved object, from a
 * component (and host, for kubelet and virt-handler). `kubectl describe`
 * lists them by `involvedObject` field selectors. Nothing is recorded in a
 * namespace that is gone or terminating, as the API server would refuse it.
 */
export interface EventSource {
  component: string;
  host?: string;
}

export class EventRecorder {
  constructor(private readonly store: ObjectStore) {}

  record(
    about: Obj,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
    source: EventSource,
  ): void {
    const namespace = about.metadata.namespace ?? 'default';
    const ns = this.store.peek('namespaces', undefined, namespace);
    if (!ns || ns.metadata.deletionTimestamp) return;
    const at = timestamp();
    this.store.create('events', {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: {
        name: `${about.metadata.name ?? 'unknown'}.${randomBytes(8).toString('hex')}`,
        namespace,
      },
      involvedObject: {
        apiVersion: about.apiVersion,
        kind: about.kind,
        name: about.metadata.name,
        namespace,
        uid: about.metadata.uid,
        resourceVersion: about.metadata.resourceVersion,
      },
      reason,
      message,
      source,
      firstTimestamp: at,
      lastTimestamp: at,
      count: 1,
      type,
      eventTime: null,
      reportingComponent: source.component,
      reportingInstance: source.host ?? '',
    });
  }
}
