;;; push-sldb.el --- Post-mortem of live failures in a *push-sldb* buffer  -*- lexical-binding: t; -*-

;;; Commentary:

;; `M-x push-errors' lists the cluster's kept failures (newest first) in *push-sldb*, as
;; SLIME's SLDB does for a Lisp error.  Keys there:
;;
;;   RET  on a failure: open it (numbered frames with file:line and the source line)
;;        on a frame: show (or hide) its locals
;;   v    visit the frame's source (file:line) in the app
;;   e    evaluate an expression in the frame (its globals, a copy of its locals)
;;   r    replay the failed request against the code as it is now
;;   g    refresh        l  back to the list        q  quit
;;
;; Everything goes through `push lsp''s post-mortem commands (push.errors, push.pm.open,
;; push.pm.locals, push.pm.eval, push.pm.replay; see lsp/README.md).

;;; Code:

(require 'cl-lib)
(require 'eglot)
(require 'jsonrpc)
(require 'seq)
(require 'subr-x)
(require 'push)

(defconst push-sldb-buffer-name "*push-sldb*"
  "The buffer listing and opening kept failures.")

(defface push-sldb-heading-face
  '((t :inherit bold))
  "Face of headings in *push-sldb*."
  :group 'push)

(defface push-sldb-frame-face
  '((t :inherit font-lock-function-name-face))
  "Face of frame lines in *push-sldb*."
  :group 'push)

(defvar-local push-sldb--server nil
  "The `push lsp' server this buffer asks.")

(defvar-local push-sldb--root nil
  "The app root whose files frames are visited in.")

(defvar-local push-sldb--rows nil
  "The failures listed, a list of plists (newest first).")

(defvar-local push-sldb--view nil
  "The opened failure (result of push.pm.open), or nil in the list.")

(defvar-local push-sldb--locals nil
  "Alist: frame index -> its locals, for the frames whose locals are shown.")

(defvar-local push-sldb--evals nil
  "Alist: frame index -> list of (CODE . RESULT-TEXT) evaluated there.
Newest first.")

(defvar-local push-sldb--note nil
  "A line shown above the frames (the last replay's outcome).")

(defun push-sldb--find-server ()
  "The `push lsp' server of this buffer, else any running one."
  (or (push--server)
      (and (boundp 'eglot--servers-by-project)
           (cl-loop for servers being the hash-values of eglot--servers-by-project
                    thereis (cl-find-if (lambda (s) (and (cl-typep s 'push-eglot-server)
                                                         (jsonrpc-running-p s)))
                                        servers)))
      (user-error "Push: not connected; open a file of the app and M-x push-connect")))

(defun push-sldb--error-text (err)
  "The server's message in the jsonrpc error ERR."
  (or (alist-get 'jsonrpc-error-message (seq-filter #'consp (cdr err)))
      (error-message-string err)))

(defun push-sldb--request (command args)
  "Run server COMMAND with ARGS (a plist) on this buffer's server.
Return the result; a refusal (an expired failure, say) is a user error with the
server's message."
  (condition-case err
      (jsonrpc-request push-sldb--server :workspace/executeCommand
                       (list :command command :arguments (vector args)))
    (jsonrpc-error (user-error "Push: %s" (push-sldb--error-text err)))))

;;;###autoload
(defun push-errors ()
  "List the cluster's kept failures in *push-sldb* (newest first)."
  (interactive)
  (let ((server (push-sldb--find-server))
        (root (if buffer-file-name (push--app-root) push-sldb--root))
        (buffer (get-buffer-create push-sldb-buffer-name)))
    (with-current-buffer buffer
      (unless (derived-mode-p 'push-sldb-mode)
        (push-sldb-mode))
      (setq push-sldb--server server)
      (when root (setq push-sldb--root root))
      (push-sldb-list))
    (pop-to-buffer buffer)
    buffer))

(defun push-sldb-list ()
  "Show the list of failures, asked again."
  (interactive)
  (let ((result (push-sldb--request "push.errors" (list))))
    (setq push-sldb--rows (append (plist-get result :rows) nil)
          push-sldb--view nil
          push-sldb--locals nil
          push-sldb--evals nil
          push-sldb--note nil)
    (push-sldb--render)
    (goto-char (point-min))
    (push-sldb--next 'push-sldb-failure)
    (let ((missing (append (plist-get result :missing) nil)))
      (when missing
        (message "Push: not asked: %s"
                 (mapconcat (lambda (m) (format "node %s (%s)" (plist-get m :node)
                                                (plist-get m :why)))
                            missing ", "))))))

(defun push-sldb--next (property)
  "Move to the first text with PROPERTY at or after point."
  (let ((at (if (get-text-property (point) property)
                (point)
              (next-single-property-change (point) property))))
    (when at (goto-char at))))

(defun push-sldb--insert (text &rest properties)
  "Insert TEXT with PROPERTIES."
  (insert (apply #'propertize text properties)))

(defun push-sldb--render ()
  "Draw the buffer from its state, keeping point on the same line."
  (let ((inhibit-read-only t)
        (line (line-number-at-pos)))
    (erase-buffer)
    (if push-sldb--view
        (push-sldb--render-view push-sldb--view)
      (push-sldb--render-list))
    (goto-char (point-min))
    (forward-line (1- line))))

(defun push-sldb--render-list ()
  "Draw the list of failures."
  (push-sldb--insert "Push failures, newest first" 'face 'push-sldb-heading-face)
  (insert "   (RET open, g refresh, q quit)\n\n")
  (if (null push-sldb--rows)
      (insert "No failures are kept.\n")
    (dolist (row push-sldb--rows)
      (let ((start (point)))
        (insert (format "%-12s %s  %s@v%s  %s\n" (plist-get row :id)
                        (format-time-string "%H:%M:%S"
                                            (/ (or (plist-get row :at_ms) 0) 1000.0))
                        (plist-get row :app) (plist-get row :version)
                        (plist-get row :origin)))
        (insert (format "             %s  at %s\n" (plist-get row :error)
                        (plist-get row :place)))
        (put-text-property start (point) 'push-sldb-failure (plist-get row :id))))))

(defun push-sldb--render-view (view)
  "Draw the opened failure VIEW with its frames."
  (let ((row (plist-get view :row)))
    (push-sldb--insert (format "Failure %s" (plist-get row :id)) 'face 'push-sldb-heading-face)
    (insert (format " on node %s: %s (%s@v%s)\n" (plist-get row :node) (plist-get row :origin)
                    (plist-get row :app) (plist-get row :version)))
    (push-sldb--insert (concat (plist-get row :error) "\n") 'face 'error)
    (when (stringp (plist-get view :request))
      (insert "Request: " (car (split-string (plist-get view :request) "\n")) "\n"))
    (insert "(RET locals, v source, e eval in frame, r replay, g refresh, l list, q quit)\n")
    (when push-sldb--note
      (insert push-sldb--note "\n"))
    (insert "\nFrames:\n")
    (dolist (frame (append (plist-get view :frames) nil))
      (let ((index (plist-get frame :index))
            (start (point)))
        (push-sldb--insert (format "%3d: %s:%s in %s\n" index (plist-get frame :file)
                                   (plist-get frame :line) (plist-get frame :function))
                           'face 'push-sldb-frame-face)
        (insert (format "       %s\n" (string-trim (or (plist-get frame :code) ""))))
        (when-let ((locals (alist-get index push-sldb--locals)))
          (if (eq locals 'none)
              (insert "       (no locals)\n")
            (dolist (local locals)
              (insert (format "       %s = %s\n" (plist-get local :name)
                              (plist-get local :repr))))))
        (dolist (done (reverse (alist-get index push-sldb--evals)))
          (insert (format "       >>> %s\n       %s\n" (car done) (cdr done))))
        (put-text-property start (point) 'push-sldb-frame index)))))

(defun push-sldb-open (id)
  "Open failure ID: its frames."
  (interactive (list (or (get-text-property (point) 'push-sldb-failure)
                         (user-error "Push: no failure here"))))
  (let ((view (push-sldb--request "push.pm.open" (list :id id))))
    (setq push-sldb--view view
          push-sldb--locals nil
          push-sldb--evals nil
          push-sldb--note nil)
    (push-sldb--render)
    (goto-char (point-min))
    (push-sldb--next 'push-sldb-frame)))

(defun push-sldb--id ()
  "The id of the opened failure."
  (or (plist-get (plist-get push-sldb--view :row) :id)
      (user-error "Push: open a failure first (RET on it)")))

(defun push-sldb--frame-at-point ()
  "The frame plist at point (frame 0 when point is on none)."
  (let ((index (or (get-text-property (point) 'push-sldb-frame) 0)))
    (or (cl-find index (append (plist-get push-sldb--view :frames) nil)
                 :key (lambda (f) (plist-get f :index)))
        (user-error "Push: this failure has no frames"))))

(defun push-sldb-toggle-locals ()
  "Show or hide the locals of the frame at point."
  (interactive)
  (push-sldb--id)
  (let ((index (plist-get (push-sldb--frame-at-point) :index)))
    (if (alist-get index push-sldb--locals)
        (setf (alist-get index push-sldb--locals nil 'remove) nil)
      (let ((locals (append (push-sldb--request "push.pm.locals"
                                                (list :id (push-sldb--id) :frame index))
                            nil)))
        (setf (alist-get index push-sldb--locals) (or locals 'none))))
    (push-sldb--render)))

(defun push-sldb-ret ()
  "Open the failure at point, or show the locals of the frame at point."
  (interactive)
  (cond ((get-text-property (point) 'push-sldb-failure)
         (push-sldb-open (get-text-property (point) 'push-sldb-failure)))
        (push-sldb--view (push-sldb-toggle-locals))
        (t (user-error "Push: no failure here"))))

(defun push-sldb--local-file (file)
  "The local file of a frame's FILE: `APP@vN/PATH' is PATH under the app root."
  (if (string-match "\\`[^/]+@v[0-9]+/\\(.*\\)\\'" file)
      (expand-file-name (match-string 1 file) (or push-sldb--root default-directory))
    file))

(defun push-sldb-visit ()
  "Visit the source of the frame at point."
  (interactive)
  (push-sldb--id)
  (let* ((frame (push-sldb--frame-at-point))
         (file (push-sldb--local-file (plist-get frame :file))))
    (unless (file-exists-p file)
      (user-error "Push: %s is not here (frame file %s); open the app's folder first"
                  file (plist-get frame :file)))
    (pop-to-buffer (find-file-noselect file))
    (goto-char (point-min))
    (forward-line (1- (plist-get frame :line)))
    (current-buffer)))

(defun push-sldb-eval (code)
  "Evaluate CODE in the frame at point.
Show the result in the echo area and the buffer."
  (interactive (progn (push-sldb--id)
                      (list (read-string (format "Eval in frame %s: "
                                                 (plist-get (push-sldb--frame-at-point)
                                                            :index))))))
  (let* ((index (plist-get (push-sldb--frame-at-point) :index))
         (result (push-sldb--request "push.pm.eval"
                                     (list :id (push-sldb--id) :frame index :code code)))
         (text (cond ((push--truthy (plist-get result :error)) (plist-get result :error))
                     ((stringp (plist-get result :value))
                      (concat "=> " (plist-get result :value)))
                     (t "ok"))))
    (setq push-last-result result)
    (push (cons code text) (alist-get index push-sldb--evals))
    (push-sldb--render)
    (message "Push: %s" text)
    result))

(defun push-sldb-replay ()
  "Run the failed request again against the code as it is now."
  (interactive)
  (let* ((result (push-sldb--request "push.pm.replay" (list :id (push-sldb--id))))
         (failure (plist-get result :failure))
         (text (if (push--truthy (plist-get result :ok))
                   (format "Replay passed: %s" (plist-get result :summary))
                 (format "Replay failed again: %s%s" (plist-get result :summary)
                         (if (stringp failure) (format " (new failure %s)" failure) "")))))
    (setq push-sldb--note text)
    (push-sldb--render)
    (message "Push: %s" text)
    result))

(defun push-sldb-refresh ()
  "Ask again: the list, or the opened failure."
  (interactive)
  (if push-sldb--view
      (let ((locals push-sldb--locals)
            (evals push-sldb--evals)
            (note push-sldb--note))
        (setq push-sldb--view
              (push-sldb--request "push.pm.open" (list :id (push-sldb--id))))
        (setq push-sldb--locals locals push-sldb--evals evals push-sldb--note note)
        (push-sldb--render))
    (push-sldb-list)))

(defvar push-sldb-mode-map
  (let ((map (make-sparse-keymap)))
    (set-keymap-parent map special-mode-map)
    (define-key map (kbd "RET") #'push-sldb-ret)
    (define-key map (kbd "v") #'push-sldb-visit)
    (define-key map (kbd "e") #'push-sldb-eval)
    (define-key map (kbd "r") #'push-sldb-replay)
    (define-key map (kbd "g") #'push-sldb-refresh)
    (define-key map (kbd "l") #'push-sldb-list)
    (define-key map (kbd "q") #'quit-window)
    (define-key map (kbd "n") #'next-line)
    (define-key map (kbd "p") #'previous-line)
    map)
  "Keys of `push-sldb-mode'.")

(define-derived-mode push-sldb-mode special-mode "Push-SLDB"
  "Kept failures of a Push cluster, and one opened: its frames, locals and evals.

\\{push-sldb-mode-map}"
  (setq truncate-lines t))

(provide 'push-sldb)
;;; push-sldb.el ends here
