package admin

import (
	"net/http"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/account"
)

// AccountHandler answers a request about one account with a status code
// and a JSON value.
type AccountHandler func(r *http.Request, a *account.Account) (code int, body any)

// HandleAccount registers an authenticated route of another package
// (the bounce collector's, issue 15) whose pattern has the {email} path
// value of /admin/accounts/{email}: the account is found as for the
// API's own routes (email or account_id), 404 otherwise.
func (a *API) HandleAccount(pattern string, h AccountHandler) {
	a.handle(pattern, func(w http.ResponseWriter, r *http.Request) {
		if acc := a.find(w, r); acc != nil {
			code, v := h(r, acc)
			writeJSON(w, code, v)
		}
	})
}
