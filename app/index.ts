import { boot } from './boot.js';

// `npm start`: everything comes from the environment.
await boot(process.env);
