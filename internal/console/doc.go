// Package console is the operator's web console, served by the admin
// listener at "/" beside the admin API (whose routes it passes on
// unchanged): an overview with a live chart of the last hour, the
// accounts table (search, filters, sorting and paging on the server), an
// account's page with its actions, and the onboarding invitations.
//
// Sign-in takes the admin token (admin.API.CheckToken: the API's
// constant-time check and its hold-back of failing addresses), then a
// session cookie (HttpOnly, SameSite=Strict, Secure under TLS, expiring)
// names a session in a bounded server-side store (sessions.go). Every
// state-changing request carries the session's CSRF token, compared in
// constant time. Pages are rendered on the server with html/template
// (webui), work without script, and carry no secret: views are built field
// by field from what may be shown. One script file (webui assets,
// console.js) polls /live, a JSON of the overview's numbers, every few
// seconds.
//
// The account actions use what the API uses: admin.API.SetDisabled, the
// Backend's RefreshToken, the account's Budget. Onboarding and Cluster are
// interfaces other packages implement; without them the pages say how to
// turn them on, or are hidden. A Console is safe for concurrent use.
package console
