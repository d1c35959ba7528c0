/**
 * The search attribute a run's pipeline name is kept in, for Temporal's list query to filter by: `TemperedPipeline`
 * (Keyword). A custom search attribute must be registered on the namespace first (`temporal operator search-attribute
 * create --namespace NS --name TemperedPipeline --type Keyword`); where it is not, runs are started without it and the
 * pipeline filter reads each run's memo instead, as it did before there was one.
 *
 * Unlike the memo, a search attribute is never encrypted (Temporal indexes it): the pipeline's name is in clear there
 * with TEMPERED_PAYLOAD_KEY too, as it already is in the run ids tempered makes (`<pipeline>-<time>-<hex>`), so a
 * person without the key can still list one pipeline's runs. Params, submitter and spec stay in the encrypted memo.
 */
import type { Client } from '@temporalio/client';
import { defineSearchAttributeKey, SearchAttributeType, TypedSearchAttributes } from '@temporalio/common';
import proto from '@temporalio/proto';

export const PIPELINE_ATTRIBUTE = 'TemperedPipeline';
const PIPELINE_KEY = defineSearchAttributeKey(PIPELINE_ATTRIBUTE, SearchAttributeType.KEYWORD);
const KEYWORD = proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;

/** How long whether the namespace has the attribute is taken as known: one registered while a dashboard runs is used within it. */
const RECHECK_MS = 60_000;
const known = new WeakMap<Client, { at: number; has: Promise<boolean> }>();

/**
 * Whether the client's namespace has TemperedPipeline registered as a Keyword: asked of the server at most once a
 * minute per client. A server that will not say (no permission to list search attributes, a stand-in client) is taken
 * as not having it, which costs only the filter's speed.
 */
export function hasPipelineAttribute(client: Client): Promise<boolean> {
  const seen = known.get(client);
  if (seen && Date.now() - seen.at < RECHECK_MS) return seen.has;
  const has = Promise.resolve()
    .then(() => client.connection.operatorService.listSearchAttributes({ namespace: client.options.namespace }))
    .then(
      (r) => r.customAttributes?.[PIPELINE_ATTRIBUTE] === KEYWORD,
      () => false,
    );
  known.set(client, { at: Date.now(), has });
  return has;
}

/** The search attributes a run of `pipeline` starts with: its name where the namespace has the attribute, else none. */
export async function pipelineAttributes(client: Client, pipeline: string): Promise<{ typedSearchAttributes?: TypedSearchAttributes }> {
  if (!(await hasPipelineAttribute(client))) return {};
  return { typedSearchAttributes: new TypedSearchAttributes([{ key: PIPELINE_KEY, value: pipeline }]) };
}

/** The pipeline name a listed run carries in the attribute, if it does. */
export function listedPipeline(wf: { typedSearchAttributes?: TypedSearchAttributes }): string | undefined {
  return wf.typedSearchAttributes?.get(PIPELINE_KEY);
}
