;;; push.el --- Live Python on a Push cluster: eval, patch, deploy, completion  -*- lexical-binding: t; -*-

;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (eglot "1.9") (jsonrpc "1.0"))
;; Keywords: languages, processes, tools
;; URL: see the Push repository, editor-plugins/emacs

;;; Commentary:

;; `push-mode' is a minor mode for Python buffers of a Push app.  It talks to `push lsp' (the
;; language server in the `push' binary) through eglot, so completion (`completion-at-point')
;; and eldoc come from live objects on a running node, and it adds SLIME/CIDER-style keys:
;;
;;   C-x C-e  eval the statement before point     C-M-x    eval the top-level def/statement
;;   C-c C-r  eval the region                     C-c C-k  eval the whole buffer
;;   C-c C-p  patch the def at point into the running module on the node
;;   C-c C-d  deploy the app                      C-c C-c  interrupt the running eval
;;   C-c C-z  switch to the *push-repl* buffer (a comint running `push repl')
;;   C-c C-e  M-x push-errors: the cluster's kept failures in *push-sldb* (push-sldb.el)
;;
;; Results appear as an overlay after the evaluated code and are appended to *push-repl*.
;; The node is found from `push-address'/`push-token', else `push lsp''s own lookup: the
;; environment (PUSH_ADDR, PUSH_TOKEN) or the `.push/' directory that `push up' writes.
;;
;; All logic lives in the language server; this file only maps keys to its commands
;; (see lsp/README.md in the Push repository for the contract).

;;; Code:

(require 'cl-lib)
(require 'comint)
(require 'eglot)
(require 'jsonrpc)
(require 'project)
(require 'python)
(require 'subr-x)

(defgroup push nil
  "Live Python on a Push cluster."
  :group 'languages
  :prefix "push-")

(defcustom push-program "push"
  "The `push' executable."
  :type 'string)

(defcustom push-lsp-arguments nil
  "Extra arguments for `push lsp', e.g. (\"--to\" \"127.0.0.1:7001\")."
  :type '(repeat string))

(defcustom push-repl-arguments nil
  "Extra arguments for `push repl' in the *push-repl* buffer."
  :type '(repeat string))

(defcustom push-address nil
  "Node address HOST:PORT sent to the server; nil lets `push lsp' find it."
  :type '(choice (const nil) string))

(defcustom push-token nil
  "Cluster token sent to the server; nil lets `push lsp' find it."
  :type '(choice (const nil) string))

(defcustom push-result-prefix " => "
  "Text shown before an inline result."
  :type 'string)

(defcustom push-max-inline-length 200
  "Inline results longer than this are cut (the REPL buffer gets them whole)."
  :type 'integer)

(defface push-result-face
  '((t :inherit font-lock-comment-face :slant italic))
  "Face of inline results.")

(defface push-error-face
  '((t :inherit error))
  "Face of inline errors.")

(defconst push-repl-buffer-name "*push-repl*"
  "The buffer that collects results and runs `push repl'.")

(defvar push-status nil
  "The last `push/status' the server sent, a plist.")

(defvar push-last-result nil
  "The last eval outcome, a plist (useful for tests and commands).")

;;;; The server

(defclass push-eglot-server (eglot-lsp-server) ()
  "An eglot server for `push lsp'.")

(cl-defmethod eglot-initialization-options ((_server push-eglot-server))
  "Send `push-address' and `push-token' when set."
  (let (opts)
    (when push-token (setq opts (plist-put opts :token push-token)))
    (when push-address (setq opts (plist-put opts :address push-address)))
    (or opts eglot--{})))

(cl-defmethod eglot-handle-notification
  ((_server push-eglot-server) (_method (eql push/status)) &rest params)
  "Remember the node's status and show it."
  (setq push-status params)
  (force-mode-line-update t)
  (message "Push: %s" (plist-get params :message)))

(defun push--app-root (&optional dir)
  "The app root above DIR: a folder holding push.ron or .push/, else DIR."
  (let ((dir (or dir default-directory)))
    (expand-file-name
     (or (locate-dominating-file dir "push.ron")
         (locate-dominating-file dir ".push")
         dir))))

(defun push--project-find (dir)
  "Make the app root above DIR the project, so every module shares one server."
  (when-let ((root (or (locate-dominating-file dir "push.ron")
                       (locate-dominating-file dir ".push"))))
    (cons 'transient (expand-file-name root))))

(add-hook 'project-find-functions #'push--project-find)

(defun push--contact ()
  "The command line of the language server."
  (append (list push-program "lsp") push-lsp-arguments))

(defun push--server ()
  "The `push lsp' server of this buffer, or nil."
  (let ((server (eglot-current-server)))
    (and server (cl-typep server 'push-eglot-server) (jsonrpc-running-p server) server)))

(defun push--server-or-lose ()
  "The server of this buffer, or a user error saying how to start one."
  (or (push--server)
      (user-error "Push: not connected; M-x push-connect (runs `%s lsp')" push-program)))

;;;###autoload
(defun push-connect ()
  "Start `push lsp' for this buffer's app with eglot.
That gives completion, eldoc and diagnostics from the live node."
  (interactive)
  (let* ((project (or (project-current) (cons 'transient (push--app-root))))
         (mode (if (derived-mode-p 'python-mode) major-mode 'python-mode)))
    (eglot mode project 'push-eglot-server (push--contact) "python")
    (push--server)))

;;;; Positions and requests

(defun push--uri ()
  "This buffer's file as a URI."
  (unless buffer-file-name
    (user-error "Push: save the buffer to a file first"))
  (eglot--path-to-uri buffer-file-name))

(defun push--position (pos)
  "LSP position of POS."
  (save-excursion (eglot--pos-to-lsp-position pos)))

(defun push--range (beg end)
  "LSP range from BEG to END."
  (list :start (push--position beg) :end (push--position end)))

(defun push--sync ()
  "Send pending edits, so the server sees the buffer as it is."
  (when (fboundp 'eglot--signal-textDocument/didChange)
    (eglot--signal-textDocument/didChange)))

(defun push-request (command args)
  "Run server COMMAND with ARGS (a plist) and wait for the result."
  (push--sync)
  (jsonrpc-request (push--server-or-lose) :workspace/executeCommand
                   (list :command command :arguments (vector args))))

(defun push-request-async (command args on-result)
  "Run server COMMAND with ARGS without blocking Emacs.
Call ON-RESULT with the result, in the current buffer."
  (push--sync)
  (let ((buffer (current-buffer)))
    (jsonrpc-async-request
     (push--server-or-lose) :workspace/executeCommand
     (list :command command :arguments (vector args))
     :success-fn (lambda (result)
                   (when (buffer-live-p buffer)
                     (with-current-buffer buffer (funcall on-result result))))
     :error-fn (lambda (err)
                 (let ((text (or (plist-get err :message) (format "%S" err))))
                   (setq push-last-result (list :ok :json-false :error text))
                   (push--append-repl (format "# %s failed\n%s\n" command text))
                   (message "Push: %s" text)))
     ;; An eval runs as long as the code does; C-c C-c interrupts it.
     :timeout nil)))

;;;; Showing results

(defvar-local push--overlays nil
  "Inline result overlays in this buffer.")

(defun push-clear-overlays (&rest _)
  "Remove inline results."
  (interactive)
  (mapc #'delete-overlay push--overlays)
  (setq push--overlays nil))

(defun push--lsp-to-point (position)
  "Point of LSP POSITION."
  (save-excursion
    (eglot--widening
     (goto-char (point-min))
     (forward-line (plist-get position :line))
     (line-end-position))))

(defun push--truthy (value)
  "Whether a JSON VALUE is true."
  (and value (not (eq value :json-false))))

(defun push--result-text (result)
  "One line describing an eval RESULT."
  (let ((value (plist-get result :value))
        (error (plist-get result :error))
        (stdout (plist-get result :stdout)))
    (cond ((push--truthy error) error)
          ((stringp value) value)
          ((and (stringp stdout) (not (string-empty-p stdout)))
           (string-trim-right stdout))
          (t "ok"))))

(defun push--show-inline (result)
  "Show RESULT as an overlay at the end of the evaluated range."
  (push-clear-overlays)
  (let* ((range (plist-get result :range))
         (end (if range (push--lsp-to-point (plist-get range :end)) (line-end-position)))
         (text (replace-regexp-in-string "\n" " " (push--result-text result)))
         (text (if (> (length text) push-max-inline-length)
                   (concat (substring text 0 push-max-inline-length) "…")
                 text))
         (face (if (push--truthy (plist-get result :ok)) 'push-result-face 'push-error-face))
         (ov (make-overlay end end nil t)))
    (overlay-put ov 'after-string (propertize (concat push-result-prefix text) 'face face))
    (overlay-put ov 'push-result t)
    (push ov push--overlays)
    (add-hook 'after-change-functions #'push-clear-overlays nil t)))

(defun push--append-repl (text)
  "Append TEXT to the *push-repl* buffer.
When `push repl' runs there, TEXT goes before its prompt."
  (let ((buffer (get-buffer-create push-repl-buffer-name)))
    (with-current-buffer buffer
      (let* ((proc (get-buffer-process buffer))
             (mark (and proc (process-mark proc)))
             (inhibit-read-only t))
        (save-excursion
          (if mark
              (progn
                (goto-char mark)
                (forward-line 0)
                (insert text)
                (unless (bolp) (insert "\n"))
                (when (< mark (point)) (set-marker mark (point))))
            (goto-char (point-max))
            (insert text)
            (unless (bolp) (insert "\n"))))))))

(defun push--record (what code result)
  "Log RESULT of evaluating CODE (described by WHAT), show it inline.
The log is the *push-repl* buffer."
  (setq push-last-result result)
  (let ((stdout (plist-get result :stdout))
        (stderr (plist-get result :stderr))
        (traceback (plist-get result :traceback))
        (value (plist-get result :value)))
    (push--append-repl
     (concat (format "# %s on node %s (%s µs)\n" what (plist-get result :node)
                     (plist-get result :micros))
             (if (stringp code) (concat (string-trim-right code) "\n") "")
             (if (and (stringp stdout) (> (length stdout) 0)) stdout "")
             (if (and (stringp stderr) (> (length stderr) 0)) stderr "")
             (cond ((stringp traceback) (concat traceback "\n"))
                   ((stringp value) (concat "=> " value "\n"))
                   (t "")))))
  (push--show-inline result)
  (message "Push: %s" (push--result-text result)))

(defun push--eval (args what &optional code command)
  "Ask the server to evaluate ARGS (plist); log as WHAT with CODE.
COMMAND defaults to push.eval."
  (let ((command (or command "push.eval")))
    (push-request-async command args
                        (lambda (result) (push--record what code result)))))

;;;; Commands

(defun push--statement-bounds ()
  "Bounds of the Python statement before point (a block statement with its block)."
  (save-excursion
    (when (looking-back "^[ \t]*" (line-beginning-position))
      (skip-chars-backward " \t\n"))
    (python-nav-beginning-of-statement)
    (let ((beg (point)))
      (if (python-info-statement-starts-block-p)
          (python-nav-end-of-block)
        (python-nav-end-of-statement))
      (cons beg (point)))))

(defun push-eval-last-statement ()
  "Evaluate the statement before point on the node (C-x C-e)."
  (interactive)
  (pcase-let ((`(,beg . ,end) (push--statement-bounds)))
    (push--eval (list :uri (push--uri) :range (push--range beg end))
                "eval statement" (buffer-substring-no-properties beg end))))

(defun push-eval-defun ()
  "Evaluate the top-level statement (def, class with decorators) at point (C-M-x)."
  (interactive)
  (push--eval (list :uri (push--uri) :position (push--position (point))) "eval defun"))

(defun push-eval-region (beg end)
  "Evaluate the region from BEG to END (C-c C-r)."
  (interactive "r")
  (push--eval (list :uri (push--uri) :range (push--range beg end))
              "eval region" (buffer-substring-no-properties beg end)))

(defun push-eval-buffer ()
  "Evaluate the whole buffer in the session (C-c C-k)."
  (interactive)
  (push--eval (list :uri (push--uri)) (format "eval %s" (buffer-name))))

(defun push-eval-string (code)
  "Evaluate CODE in the server's session."
  (interactive "sPython: ")
  (push--eval (list :uri (push--uri) :code code :position (push--position (point)))
              "eval" code))

(defun push-patch-defun ()
  "Redefine the def/class at point inside the running module on the node (C-c C-p)."
  (interactive)
  (push--eval (list :uri (push--uri) :position (push--position (point)))
              "patch" nil "push.evalInModule"))

(defun push-deploy (&optional root)
  "Deploy the app as a new version (C-c C-d).
ROOT defaults to the app root of this buffer's file."
  (interactive)
  (save-some-buffers (not (called-interactively-p 'any))
                     (lambda () (and buffer-file-name (string-suffix-p ".py" buffer-file-name))))
  (push-request-async "push.deploy" (if root (list :root root) (list :root (push--app-root)))
                      (lambda (result)
                        (setq push-last-result result)
                        (push--append-repl (format "# deploy\n%s\n" (plist-get result :summary)))
                        (message "Push: %s" (plist-get result :summary)))))

(defun push-rollback (&optional version)
  "Move HEAD back to the previous version, or to VERSION with a prefix argument."
  (interactive (list (when current-prefix-arg (read-number "Version: "))))
  (let ((result (push-request "push.rollback" (if version (list :version version) (list)))))
    (message "Push: HEAD is now v%s" (plist-get result :version))
    result))

(defun push-interrupt ()
  "Interrupt the eval running in the server's session (C-c C-c)."
  (interactive)
  (let ((result (push-request "push.interrupt" (list))))
    (message (if (push--truthy (plist-get result :ok))
                 "Push: interrupted"
               "Push: nothing was running"))
    result))

(defun push-show-status ()
  "Show the node the server is connected to."
  (interactive)
  (let ((status (push-request "push.status" (list))))
    (setq push-status status)
    (message "Push: %s" (plist-get status :message))
    status))

(defun push-repl ()
  "Switch to *push-repl* (C-c C-z).
Starts `push repl' there if it is not running."
  (interactive)
  (let ((buffer (get-buffer-create push-repl-buffer-name))
        (default-directory (push--app-root)))
    (unless (comint-check-proc buffer)
      (with-current-buffer buffer
        (goto-char (point-max)))
      (apply #'make-comint-in-buffer "push-repl" buffer push-program nil
             "repl" push-repl-arguments)
      (with-current-buffer buffer
        (push-repl-mode)))
    (pop-to-buffer buffer)))

(define-derived-mode push-repl-mode comint-mode "Push-REPL"
  "The `push repl' buffer."
  (setq-local comint-prompt-regexp "^\\(?:[^\n]* \\)?\\(?:>>>\\|\\.\\.\\.\\) ")
  (setq-local comint-process-echoes nil)
  (add-hook 'comint-output-filter-functions #'ansi-color-process-output nil t))

(defun push--lighter ()
  "Mode-line text."
  (if (and push-status (push--truthy (plist-get push-status :connected)))
      (format " Push[%s%s]" (plist-get push-status :node)
              (if-let ((v (plist-get push-status :version))) (format " v%s" v) ""))
    " Push[-]"))

(autoload 'push-errors "push-sldb"
  "List the cluster's kept failures in *push-sldb* (newest first)." t)

(defvar push-mode-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "C-x C-e") #'push-eval-last-statement)
    (define-key map (kbd "C-M-x") #'push-eval-defun)
    (define-key map (kbd "C-c C-r") #'push-eval-region)
    (define-key map (kbd "C-c C-k") #'push-eval-buffer)
    (define-key map (kbd "C-c C-p") #'push-patch-defun)
    (define-key map (kbd "C-c C-d") #'push-deploy)
    (define-key map (kbd "C-c C-c") #'push-interrupt)
    (define-key map (kbd "C-c C-z") #'push-repl)
    (define-key map (kbd "C-c C-s") #'push-show-status)
    (define-key map (kbd "C-c C-e") #'push-errors)
    map)
  "Keys of `push-mode'.")

;;;###autoload
(define-minor-mode push-mode
  "Live Python on a Push cluster, SLIME-style.

\\{push-mode-map}"
  :lighter (:eval (push--lighter))
  :keymap push-mode-map
  (when (and push-mode (not (push--server)) buffer-file-name)
    (condition-case err
        (push-connect)
      (error (message "Push: could not start `%s lsp': %s"
                      push-program (error-message-string err))))))

(provide 'push)
;;; push.el ends here
