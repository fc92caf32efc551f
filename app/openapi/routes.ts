import { chatDocs } from '../chat/route.js';
import { storedCompletionDocs } from '../chat/stored-route.js';
import { adminDocs } from '../routes/admin.js';
import { conversationDocs } from '../routes/conversations/index.js';
import { liveDocs } from '../routes/conversations/live.js';
import { portabilityDocs } from '../routes/conversations/portability.js';
import { searchDocs } from '../routes/conversations/search.js';
import { healthDocs } from '../routes/health.js';
import { meDocs } from '../routes/me.js';
import { metricsDocs } from '../routes/metrics.js';
import { modelDocs } from '../routes/models.js';
import { privacyDocs } from '../routes/privacy.js';
import { referenceDocs } from '../routes/reference.js';
import { responseDocs } from '../routes/responses.js';
import { sharedDocs } from '../routes/shared.js';
import { uiDocs } from '../routes/ui.js';
import type { RouteDoc } from './registry.js';

/** Every route the API reference describes: each module's own list. A new module adds one line. */
export const documentedRoutes: RouteDoc[] = [
  ...chatDocs,
  ...storedCompletionDocs,
  ...responseDocs,
  ...modelDocs,
  ...conversationDocs,
  ...liveDocs,
  ...portabilityDocs,
  ...searchDocs,
  ...sharedDocs,
  ...meDocs,
  ...privacyDocs,
  ...adminDocs,
  ...healthDocs,
  ...metricsDocs,
  ...referenceDocs,
  ...uiDocs,
];
