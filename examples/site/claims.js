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
