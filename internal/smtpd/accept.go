package smtpd

import "syscall"

// syscallEMFILE is out of file descriptors: temporary, back off and retry.
const syscallEMFILE = syscall.EMFILE
