// The privacy page: what happens to a patient's question. The numbers and names come from the
// operator's settings (`/api/site`); without them the built-in defaults are shown.
import { $, setText } from './dom.js';
import { t } from './i18n.js';
import { initChrome } from './ui.js';
import { loadSite, disclaimer, retentionDays, operatorName, operatorContact } from './site.js';

function render() {
  setText($('#disclaimer'), disclaimer());
  setText($('#privacy-keep'), t('privacy.keep', { days: retentionDays() }));
  const contact = operatorContact();
  setText($('#privacy-contact'), contact
    ? t('privacy.contactWith', { operator: operatorName(), contact })
    : t('privacy.contact', { operator: operatorName() }));
}

// Back to where the patient came from (their session: the pages send no referrer, so the
// history decides); a page opened on its own offers the session list.
$('#back').addEventListener('click', (e) => {
  if (history.length > 1) {
    e.preventDefault();
    history.back();
  }
});

initChrome({ onLang: render });
render();
loadSite().then(render);
