// Shows the signed-in user's ID token claims, as /oauth2/userinfo returns
// them ({sub, idToken, rawIdToken}).
(async () => {
	const out = document.getElementById("claims");
	try {
		const res = await fetch("/oauth2/userinfo", { headers: { Accept: "application/json" } });
		if (!res.ok) {
			out.textContent = `/oauth2/userinfo answered ${res.status}`;
			return;
		}
		const info = await res.json();
		out.textContent = JSON.stringify(info.idToken, null, 2);
	} catch (err) {
		out.textContent = `could not load claims: ${err}`;
	}
})();

// Calls the demo API both ways and shows its answer. Either way the page
// only ever handles the placeholder string: Caddy's token_inject puts the
// real access token into the request upstream, and the API answers with
// {valid, sub, email, ...}, never the token.
async function callAPI(path, headers) {
	const out = document.getElementById("api-result");
	out.textContent = `GET ${path} …`;
	try {
		const res = await fetch(path, { headers: { Accept: "application/json", ...headers } });
		const text = await res.text();
		let shown = text;
		try {
			shown = JSON.stringify(JSON.parse(text), null, 2);
		} catch {}
		out.textContent = `GET ${path} -> ${res.status}\n${shown}`;
	} catch (err) {
		out.textContent = `GET ${path} failed: ${err}`;
	}
}

// Way 1: the app sends the placeholder in its own Authorization header.
document.getElementById("call-app").addEventListener("click", () =>
	callAPI("/api/whoami", { Authorization: "Bearer <<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>" }));

// Way 2: no header; the Caddyfile's request_header adds it for /admin-api/*.
document.getElementById("call-admin").addEventListener("click", () =>
	callAPI("/admin-api/whoami", {}));
