export { pipelineRun, statusQuery } from './pipeline.ts';
