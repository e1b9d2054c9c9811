package config

import "github.com/xoauth2-proxy/xoauth2-proxy/internal/safefile"

// ReplaceAccounts writes data, a whole accounts file (the cluster's
// account set, package clusteraccounts), over path under the same lock,
// validation and atomic rename as EditAccounts: a document that does not
// load with configPath's provider settings changes nothing.
func ReplaceAccounts(path, configPath string, data []byte) error {
	build := func(string) ([]byte, error) { return data, nil }
	return safefile.Update(path, build, func(tmp string) error {
		_, _, err := Load(LoadOptions{ConfigPath: configPath, AccountsPath: tmp, ConfigExplicit: configPath != "",
			SearchDirs: []string{}, accountsAs: path})
		return err
	})
}
