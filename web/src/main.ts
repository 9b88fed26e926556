/**
 * The page's shell: hash routes (#/endpoints, #/jobs?endpoint=&status=, #/jobs/{id}) and the
 * sign-in panel, where the user gives a function key or an Entra access token (kept in
 * sessionStorage; see api.ts and web/README.md).
 */
import { type Credential, loadCredential, saveCredential } from './api.js';
import { endpointsPage } from './endpoints.js';
import { jobPage } from './job.js';
import { jobsPage } from './jobs.js';

const main = document.getElementById('main') as HTMLElement;
const signInButton = document.getElementById('sign-in') as HTMLButtonElement;
const dialog = document.getElementById('sign-in-dialog') as HTMLDialogElement;
let leave: (() => void) | undefined;

function route(): void {
  leave?.();
  leave = undefined;
  const hash = location.hash.replace(/^#/, '') || '/jobs';
  const [path = '', query = ''] = hash.split('?');
  const params = new URLSearchParams(query);
  for (const link of document.querySelectorAll<HTMLAnchorElement>('nav a')) {
    const current = path.startsWith(link.getAttribute('href')?.substring(1) ?? '\u0000');
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const job = /^\/jobs\/([a-z0-9-]+)$/.exec(path);
  document.title = `${job ? job[1] : path === '/endpoints' ? 'Endpoints' : 'Jobs'} · batch-endpoints`;
  if (job?.[1]) leave = jobPage(main, job[1]);
  else if (path === '/endpoints') void endpointsPage(main);
  else void jobsPage(main, params);
  main.focus({ preventScroll: true });
}

function describe(c: Credential): string {
  return c.kind === 'key' ? 'Function key set' : c.kind === 'bearer' ? 'Entra token set' : 'Sign in';
}

function openSignIn(): void {
  const current = loadCredential();
  const form = dialog.querySelector('form') as HTMLFormElement;
  (form.elements.namedItem('kind') as RadioNodeList).value = current.kind;
  (form.elements.namedItem('value') as HTMLInputElement).value = current.kind === 'none' ? '' : current.value;
  dialog.showModal();
}

function setUpSignIn(): void {
  signInButton.textContent = describe(loadCredential());
  signInButton.addEventListener('click', openSignIn);
  const form = dialog.querySelector('form') as HTMLFormElement;
  form.addEventListener('submit', (event) => {
    const submitter = event.submitter;
    if (submitter instanceof HTMLButtonElement && submitter.value === 'cancel') return;
    const kind = (form.elements.namedItem('kind') as RadioNodeList).value;
    const value = (form.elements.namedItem('value') as HTMLInputElement).value.trim().replace(/^Bearer\s+/i, '');
    const credential: Credential = kind === 'key' && value ? { kind: 'key', value } : kind === 'bearer' && value ? { kind: 'bearer', value } : { kind: 'none' };
    saveCredential(credential);
    signInButton.textContent = describe(credential);
    route();
  });
}

setUpSignIn();
window.addEventListener('hashchange', route);
if (loadCredential().kind === 'none' && !sessionStorage.getItem('batch-endpoints.asked')) {
  sessionStorage.setItem('batch-endpoints.asked', '1');
  openSignIn();
}
route();
