/**
 * The page's shell: hash routes (#/endpoints, #/jobs?endpoint=&status=, #/jobs/{id}) and the
 * sign-in panel, where the user signs in with Microsoft (when the app offers it: sign-in.ts), or
 * gives a function key or an Entra access token (kept in sessionStorage; see api.ts and
 * web/README.md). A 401 from the API opens the panel again.
 */
import { type Credential, UNAUTHORIZED_EVENT, loadCredential, saveCredential } from './api.js';
import { type AppSettings, beginSignIn, completeSignIn, loadAppSettings } from './sign-in.js';
import { endpointsPage } from './endpoints.js';
import { jobPage } from './job.js';
import { jobsPage } from './jobs.js';

const main = document.getElementById('main') as HTMLElement;
const signInButton = document.getElementById('sign-in') as HTMLButtonElement;
const dialog = document.getElementById('sign-in-dialog') as HTMLDialogElement;
const message = document.getElementById('sign-in-message') as HTMLParagraphElement;
const signOutButton = document.getElementById('sign-out') as HTMLButtonElement;
let leave: (() => void) | undefined;
let settings: AppSettings = { auth_mode: 'unknown', sign_in: null };

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
  if (c.kind === 'bearer' && c.signedIn) return `Signed in as ${c.user ?? 'you'}`;
  return c.kind === 'key' ? 'Function key set' : c.kind === 'bearer' ? 'Entra token set' : 'Sign in';
}

function setCredential(credential: Credential): void {
  saveCredential(credential);
  signInButton.textContent = describe(credential);
}

/** Opens the sign-in panel, with `why` (an error, or why to sign in again) when given. */
function openSignIn(why?: string): void {
  const current = loadCredential();
  const form = dialog.querySelector('form') as HTMLFormElement;
  (form.elements.namedItem('kind') as RadioNodeList).value = current.kind;
  (form.elements.namedItem('value') as HTMLInputElement).value = current.kind === 'none' ? '' : current.value;
  message.textContent = why ?? '';
  message.hidden = why === undefined;
  signOutButton.hidden = current.kind === 'none';
  if (!dialog.open) dialog.showModal();
}

function setUpSignIn(): void {
  signInButton.textContent = describe(loadCredential());
  signInButton.addEventListener('click', () => openSignIn());
  const entra = document.getElementById('entra-sign-in') as HTMLElement;
  const signIn = settings.sign_in;
  entra.hidden = signIn === null;
  (document.getElementById('sign-in-microsoft') as HTMLButtonElement).addEventListener('click', () => {
    if (signIn) void beginSignIn(signIn);
  });
  signOutButton.addEventListener('click', () => {
    // Forgets this tab's credential; the Microsoft account's own session is left alone (other apps use it).
    setCredential({ kind: 'none' });
    dialog.close();
    route();
  });
  window.addEventListener(UNAUTHORIZED_EVENT, (event) => {
    const current = loadCredential();
    // A token from sign-in that the API refuses has expired (or was revoked): it is of no more use.
    if (current.kind === 'bearer' && current.signedIn) setCredential({ kind: 'none' });
    const why = (event as CustomEvent<string>).detail;
    // Already open (a polling page meets 401 every second): what the user is typing stays, and so
    // does a message already shown (why a sign-in was just refused says more than this 401).
    if (!dialog.open) openSignIn(why);
    else if (message.hidden) {
      message.textContent = why;
      message.hidden = false;
    }
  });
  const form = dialog.querySelector('form') as HTMLFormElement;
  form.addEventListener('submit', (event) => {
    const submitter = event.submitter;
    if (submitter instanceof HTMLButtonElement && submitter.value === 'cancel') return;
    const kind = (form.elements.namedItem('kind') as RadioNodeList).value;
    const value = (form.elements.namedItem('value') as HTMLInputElement).value.trim().replace(/^Bearer\s+/i, '');
    const current = loadCredential();
    // Saving the panel unchanged keeps a signed-in token as it is (its user and expiry).
    const unchanged = current.kind === kind && current.kind !== 'none' && current.value === value;
    const credential: Credential = unchanged ? current : kind === 'key' && value ? { kind: 'key', value } : kind === 'bearer' && value ? { kind: 'bearer', value } : { kind: 'none' };
    setCredential(credential);
    route();
  });
}

async function start(): Promise<void> {
  // The authority's answer, if the tab is coming back from signing in, before any route reads the hash.
  const [outcome, loaded] = await Promise.all([completeSignIn(), loadAppSettings()]);
  settings = loaded;
  setUpSignIn();
  window.addEventListener('hashchange', route);
  if (outcome.outcome === 'refused') openSignIn(outcome.message);
  else if (outcome.outcome === 'none' && loadCredential().kind === 'none' && !sessionStorage.getItem('batch-endpoints.asked')) {
    sessionStorage.setItem('batch-endpoints.asked', '1');
    openSignIn();
  }
  route();
}

void start();
