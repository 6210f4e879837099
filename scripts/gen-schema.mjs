// Writes config.schema.json from the built zod schema: `npm run schema`.
import { writeFileSync } from 'node:fs';
import { configJsonSchema } from '../dist/config/json-schema.js';

writeFileSync(new URL('../config.schema.json', import.meta.url), `${JSON.stringify(configJsonSchema(), null, 2)}\n`);
