import * as z from 'zod';
import { ConfigSchema } from './schema.js';

/**
 * The JSON Schema of the config file, generated from the same zod schema that validates
 * it, so editors (yaml-language-server) autocomplete and check exactly what the exporter
 * accepts. Published as config.schema.json; a test keeps the two in step.
 */
export function configJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(ConfigSchema, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' }),
    title: 'flashback-exporter configuration',
  };
}
