// The demo page's script. Everything it shows comes from two places:
// /oauth2/userinfo ({sub, idToken, rawIdToken, userinfo}), which oidc_auth
// serves to the signed-in browser, and the demo API's answers. Neither ever
// holds the access token. Text goes in with textContent only, so claims
// cannot inject markup.

const $ = (id) => document.getElementById(id);

// decodeSegment decodes one base64url part of a compact JWT as JSON.
function decodeSegment(segment) {
	const base64 = segment.replace(/-/g, "+").replace(/_/g, "/");
	const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
	const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
	return JSON.parse(new TextDecoder().decode(bytes));
}

function show(id, value) {
	$(id).textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function mark(id, text, ok) {
	const el = $(id);
	el.textContent = text;
	el.className = ok ? "ok" : "bad";
}

function when(seconds) {
	return typeof seconds === "number" ? new Date(seconds * 1000).toLocaleString() : "?";
}

// The ID token: its verified claims next to the raw JWT decoded here.
(async () => {
	try {
		const res = await fetch("/oauth2/userinfo", { headers: { Accept: "application/json" } });
		if (!res.ok) {
			show("claims", `/oauth2/userinfo answered ${res.status}`);
			return;
		}
		const info = await res.json();
		show("claims", info.idToken);

		const parts = (info.rawIdToken || "").split(".");
		if (parts.length !== 3) {
			show("id-token-header", "no compact JWT in rawIdToken");
			show("id-token-payload", "");
			return;
		}
		const header = decodeSegment(parts[0]);
		const payload = decodeSegment(parts[1]);
		show("id-token-header", header);
		show("id-token-payload", payload);
		const same = payload.sub === info.idToken.sub;
		mark("id-token-check",
			`Signed with ${header.alg}, issued ${when(payload.iat)}, expires ${when(payload.exp)}; ` +
			(same ? `its sub matches the claims (${payload.sub}).` : `its sub ${payload.sub} differs from the claims' ${info.idToken.sub}!`),
			same);
	} catch (err) {
		show("claims", `could not load the ID token: ${err}`);
	}
})();

// describe fills the "What the API received" table from the API's answer
// (see cmd/demo-api): the token's shape and verdict, never the token.
function describe(path, status, answer) {
	show("api-request", `GET ${path} -> ${status}, the API saw path ${answer.path}`);
	const bearer = answer.bearer;
	if (!bearer) {
		mark("api-authorization", "no bearer token: nothing to substitute", false);
	} else if (bearer.placeholder) {
		mark("api-authorization", "the placeholder itself: nothing substituted it", false);
	} else {
		mark("api-authorization",
			`Bearer and a ${bearer.length}-character ${bearer.format} token: Caddy substituted your access token for the placeholder`,
			true);
	}
	mark("api-verdict",
		answer.valid ? `valid: the provider says it belongs to ${answer.sub} (${answer.email})` : `not valid: ${answer.error}`,
		answer.valid);
	show("api-email", answer.forwarded_email || "(none)");
	show("api-id-token", answer.id_token_forwarded ? `a JWT with sub ${answer.id_token_sub}` : "(none)");
	show("api-headers", (answer.headers || []).join(", "));
}

async function callAPI(path, headers) {
	show("api-request", `GET ${path} …`);
	for (const id of ["api-authorization", "api-verdict", "api-email", "api-id-token", "api-headers"]) {
		show(id, "");
	}
	try {
		const res = await fetch(path, { headers: { Accept: "application/json", ...headers } });
		const text = await res.text();
		let answer;
		try {
			answer = JSON.parse(text);
		} catch {
			show("api-request", `GET ${path} -> ${res.status}, not JSON`);
			show("api-result", text);
			return;
		}
		show("api-result", answer);
		describe(path, res.status, answer);
	} catch (err) {
		show("api-request", `GET ${path} failed: ${err}`);
	}
}

// Way 1: the app sends the placeholder in its own Authorization header.
$("call-app").addEventListener("click", () =>
	callAPI("/api/whoami", { Authorization: "Bearer <<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>" }));

// Way 2: no header; the Caddyfile's request_header adds it for /admin-api/*.
$("call-admin").addEventListener("click", () =>
	callAPI("/admin-api/whoami", {}));
