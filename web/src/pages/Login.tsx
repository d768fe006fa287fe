// Sign in: a back-office user (email, password, and a TOTP code when the
// account has one: asked for when the API answers `totp_required`), or the
// operator with the operator key (the agency view).
import { useState } from 'preact/hooks';
import { ApiError, login, setToken, whoAmI, type Who } from '../api';
import { message } from '../hooks';

export function Login({ onSignedIn }: { onSignedIn: (w: Who) => void }) {
  const [mode, setMode] = useState<'user' | 'operator'>('user');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [needCode, setNeedCode] = useState(false);
  const [key, setKey] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      if (mode === 'user') {
        const user = await login(email.trim(), password, needCode ? code.trim() : undefined);
        onSignedIn({ kind: 'user', user });
      } else {
        setToken(key.trim());
        const w = await whoAmI();
        if (!w || w.kind !== 'operator') throw new Error('This key is not the operator key.');
        onSignedIn(w);
      }
    } catch (err) {
      if (mode === 'operator') setToken(null);
      if (err instanceof ApiError && err.code === 'totp_required') {
        setNeedCode(true);
        setError('Enter the 6-digit code of your authenticator app.');
      } else setError(message(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="login">
      <h1>Smartlinks</h1>
      <form class="panel form" onSubmit={submit}>
        <h2>{mode === 'user' ? 'Sign in' : 'Operator sign-in'}</h2>
        {mode === 'user' ? (
          <>
            <label>
              Email
              <input type="email" name="email" autocomplete="username" required value={email} onInput={(e) => setEmail((e.target as HTMLInputElement).value)} />
            </label>
            <label>
              Password
              <input
                type="password"
                name="password"
                autocomplete="current-password"
                required
                value={password}
                onInput={(e) => setPassword((e.target as HTMLInputElement).value)}
              />
            </label>
            {needCode && (
              <label>
                Authenticator code
                <input
                  name="totp"
                  inputMode="numeric"
                  autocomplete="one-time-code"
                  pattern="[0-9]{6}"
                  required
                  value={code}
                  onInput={(e) => setCode((e.target as HTMLInputElement).value)}
                />
              </label>
            )}
          </>
        ) : (
          <label>
            Operator key
            <input type="password" name="key" autocomplete="off" required value={key} onInput={(e) => setKey((e.target as HTMLInputElement).value)} />
          </label>
        )}
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          Sign in
        </button>
        <button type="button" class="linkish" onClick={() => (setMode(mode === 'user' ? 'operator' : 'user'), setError(undefined))}>
          {mode === 'user' ? 'Sign in with the operator key' : 'Sign in as a user'}
        </button>
      </form>
    </main>
  );
}
