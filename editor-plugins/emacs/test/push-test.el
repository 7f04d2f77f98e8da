;;; push-test.el --- ERT tests for push.el against a live Push node  -*- lexical-binding: t; -*-

;;; Commentary:

;; Run in batch Emacs by tests/it/lsp.rs, which starts a real cluster, deploys an app and sets:
;;   PUSH_BIN   the push binary          PUSH_APP   the deployed app's directory
;;   PUSH_HTTP  the node's HTTP address  PUSH_ADDR/PUSH_TOKEN  read by `push lsp' itself
;; The app has app.py (a route "/" returning lib.words.word(), and "/boom/{n}" dividing by
;; zero) and lib/words.py.

;;; Code:

(require 'ert)
(require 'url)
(require 'push)

(setq push-program (or (getenv "PUSH_BIN") "push"))
(setq eglot-sync-connect 10)

(defun push-test--wait (pred &optional seconds)
  "Process events until PRED is non-nil or SECONDS (default 20) pass; return PRED's value."
  (let ((deadline (+ (float-time) (or seconds 20)))
        value)
    (while (and (not (setq value (funcall pred))) (< (float-time) deadline))
      (accept-process-output nil 0.05))
    value))

(defun push-test--file (rel)
  "Absolute path of REL in the test app."
  (expand-file-name rel (getenv "PUSH_APP")))

(defun push-test--open (rel &optional text)
  "Visit REL of the app (replacing its text with TEXT), in `push-mode', connected."
  (find-file (push-test--file rel))
  (when text
    (erase-buffer)
    (insert text))
  (push-mode 1)
  (should (push-test--wait #'push--server))
  (should (push-test--wait (lambda () (push--truthy (plist-get push-status :connected))))))

(defun push-test--eval-and-wait (thunk)
  "Clear the last result, call THUNK, wait for the new result and return it."
  (setq push-last-result nil)
  (funcall thunk)
  (should (push-test--wait (lambda () push-last-result)))
  push-last-result)

(defun push-test--http-get (path)
  "Body of GET PATH on the node's HTTP address."
  (let ((buffer (url-retrieve-synchronously
                 (format "http://%s%s" (getenv "PUSH_HTTP") path) t t 10)))
    (with-current-buffer buffer
      (goto-char (point-min))
      (re-search-forward "\n\n")
      (prog1 (buffer-substring-no-properties (point) (point-max))
        (kill-buffer)))))

(defun push-test--overlay-text ()
  "The inline result shown in this buffer."
  (let ((ov (car push--overlays)))
    (and ov (overlay-get ov 'after-string))))

(ert-deftest push-keys-are-bound ()
  (progn
    (dolist (binding '(("C-x C-e" . push-eval-last-statement)
                       ("C-M-x" . push-eval-defun)
                       ("C-c C-r" . push-eval-region)
                       ("C-c C-k" . push-eval-buffer)
                       ("C-c C-p" . push-patch-defun)
                       ("C-c C-d" . push-deploy)
                       ("C-c C-c" . push-interrupt)
                       ("C-c C-z" . push-repl)))
      (should (eq (lookup-key push-mode-map (kbd (car binding))) (cdr binding))))))

(ert-deftest push-deploy-creates-a-version ()
  (push-test--open "app.py")
  (let* ((before (plist-get (push-show-status) :version))
         (result (push-test--eval-and-wait #'push-deploy)))
    (should (eq (plist-get result :ok) t))
    (should (equal (plist-get result :version) (1+ before)))
    (should (string-match-p "deployed" (plist-get result :summary)))
    (should (push-test--wait
             (lambda () (equal (plist-get push-status :version) (1+ before)))))))

(ert-deftest push-eval-region-shows-the-value ()
  (push-test--open "scratch.py" "x = 20\nx * 2 + 2\n")
  (let ((result (push-test--eval-and-wait
                 (lambda () (push-eval-region (point-min) (point-max))))))
    (should (equal (plist-get result :value) "42"))
    (should (string-match-p "=> 42" (push-test--overlay-text)))
    (with-current-buffer push-repl-buffer-name
      (should (string-match-p "^=> 42$" (buffer-string))))))

(ert-deftest push-eval-statement-defun-and-buffer ()
  (push-test--open "scratch2.py"
                   "import push\n\n@staticmethod\ndef triple(x):\n    y = x\n\n    return y * 3\n\ntriple(5)\n")
  ;; C-M-x inside the body (after a blank line) evaluates the whole decorated def.
  (goto-char (point-min))
  (search-forward "return")
  (let ((result (push-test--eval-and-wait #'push-eval-defun)))
    (should (eq (plist-get result :ok) t))
    (should (equal (plist-get (plist-get (plist-get result :range) :start) :line) 2)))
  ;; C-x C-e on the call.
  (goto-char (point-max))
  (let ((result (push-test--eval-and-wait #'push-eval-last-statement)))
    (should (equal (plist-get result :value) "15")))
  ;; C-c C-k: the whole buffer.
  (let ((result (push-test--eval-and-wait #'push-eval-buffer)))
    (should (equal (plist-get result :value) "15")))
  ;; A failure shows the error inline and the traceback in *push-repl*.
  (let ((result (push-test--eval-and-wait (lambda () (push-eval-string "1 / 0")))))
    (should (equal (plist-get result :error) "ZeroDivisionError: division by zero"))
    (with-current-buffer push-repl-buffer-name
      (should (string-match-p "Traceback" (buffer-string))))))

(ert-deftest push-patch-defun-changes-the-running-handler ()
  (should (equal (push-test--http-get "/") "before"))
  (push-test--open "lib/words.py" "def word():\n    return 'patched from emacs'\n")
  (goto-char (point-min))
  (forward-line 1)
  (let ((result (push-test--eval-and-wait #'push-patch-defun)))
    (should (eq (plist-get result :ok) t))
    (should (equal (plist-get result :module) "lib.words")))
  (should (equal (push-test--http-get "/") "patched from emacs"))
  ;; And an eval sees the module's new behaviour too.
  (let ((result (push-test--eval-and-wait
                 (lambda () (push-eval-string "__import__('lib.words').words.word()")))))
    (should (equal (plist-get result :value) "'patched from emacs'")))
  (set-buffer-modified-p nil))

(ert-deftest push-interrupt-stops-a-loop ()
  (push-test--open "loop.py" "while True:\n    pass\n")
  (setq push-last-result nil)
  (push-eval-buffer)
  (should (push-test--wait
           (lambda () (push--truthy (plist-get (push-interrupt) :ok)))
           10))
  (should (push-test--wait (lambda () push-last-result)))
  (should (string-match-p "KeyboardInterrupt" (plist-get push-last-result :error)))
  (let ((result (push-test--eval-and-wait (lambda () (push-eval-string "'alive'")))))
    (should (equal (plist-get result :value) "'alive'"))))

(ert-deftest push-completion-comes-from-the-live-node ()
  (push-test--open "complete.py" "import push\nq = push.kv('x').ca")
  (goto-char (point-max))
  (push--sync)
  (let* ((capf (eglot-completion-at-point))
         (table (nth 2 capf))
         (found (all-completions "" table)))
    (should (member "cas" found))))

(ert-deftest push-status-and-repl-buffer ()
  (push-test--open "scratch.py")
  (let ((status (push-show-status)))
    (should (eq (plist-get status :connected) t))
    (should (integerp (plist-get status :version)))
    (should (string-match-p "node 1" (plist-get status :message)))))

(defun push-test--found (regexp)
  "A predicate: whether REGEXP matches somewhere in the current buffer."
  (lambda ()
    (save-excursion
      (goto-char (point-min))
      (re-search-forward regexp nil t))))

(defun push-test--fresh-repl ()
  "Start `push repl' in an empty *push-repl* buffer."
  (let ((buffer (get-buffer-create push-repl-buffer-name)))
    (when (get-buffer-process buffer)
      (delete-process (get-buffer-process buffer)))
    (with-current-buffer buffer
      (let ((inhibit-read-only t))
        (erase-buffer))))
  (push-repl))

(ert-deftest push-repl-buffer-runs-push-repl ()
  (push-test--open "scratch.py")
  (push-test--fresh-repl)
  (with-current-buffer push-repl-buffer-name
    (should (push-test--wait (push-test--found ">>> $")))
    (goto-char (point-max))
    (insert "6 * 7")
    (comint-send-input)
    (should (push-test--wait (push-test--found "^42$")))
    (delete-process (get-buffer-process (current-buffer)))))

;; A file of the app is its module on the node: C-x C-e on `double(21)' in app.py runs in
;; module app (where the running `double' lives), and completion there sees its names.
(ert-deftest push-a-file-of-the-app-evaluates-in-its-module ()
  (push-test--open "app.py")
  (goto-char (point-max))
  (insert "\ndouble(21)\n")
  (let ((result (push-test--eval-and-wait #'push-eval-last-statement)))
    (should (equal (plist-get result :error) nil))
    (should (equal (plist-get result :value) "42"))
    (should (equal (plist-get result :module) "app")))
  (insert "dou")
  (push--sync)
  (let* ((capf (eglot-completion-at-point))
         (found (all-completions "" (nth 2 capf))))
    (should (member "double" found)))
  (set-buffer-modified-p nil))

;; In *push-repl*, C-c C-c (comint's interrupt) interrupts the running eval and the REPL
;; goes on.
(ert-deftest push-repl-C-c-C-c-interrupts-the-eval ()
  (push-test--open "scratch.py")
  (push-test--fresh-repl)
  (with-current-buffer push-repl-buffer-name
    (let ((proc (get-buffer-process (current-buffer))))
      (should (push-test--wait (push-test--found ">>> $")))
      ;; At the prompt, before any eval: Python's answer, and the REPL stays.
      (comint-interrupt-subjob)
      (should (push-test--wait (push-test--found "^KeyboardInterrupt$")))
      (should (process-live-p proc))
      (goto-char (point-max))
      (insert "print('sleep' + 'ing', flush=True)\nwhile True: pass\n")
      (comint-send-input)
      (should (push-test--wait (push-test--found "^sleeping$")))
      (comint-interrupt-subjob)
      (should (push-test--wait
               (push-test--found "sleeping\\(?:.\\|\n\\)*while True: pass\\(?:.\\|\n\\)*KeyboardInterrupt")))
      (should (push-test--wait (push-test--found ">>> $")))
      (should (process-live-p proc))
      (goto-char (point-max))
      (insert "6 * 9")
      (comint-send-input)
      (should (push-test--wait (push-test--found "^54$")))
      (delete-process proc))))

;; Post-mortem: a route that fails (GET /boom/N divides by zero) is listed by M-x push-errors
;; in *push-sldb*; RET opens it, RET on its frame shows the locals, `e' evaluates in the
;; frame, `v' visits the source line, `r' replays (failing again), `l' lists, `q' quits.
(ert-deftest push-sldb-keys-are-bound ()
  (require 'push-sldb)
  (should (eq (lookup-key push-mode-map (kbd "C-c C-e")) 'push-errors))
  (dolist (binding '(("RET" . push-sldb-ret) ("v" . push-sldb-visit) ("e" . push-sldb-eval)
                     ("r" . push-sldb-replay) ("g" . push-sldb-refresh)
                     ("l" . push-sldb-list) ("q" . quit-window)))
    (should (eq (lookup-key push-sldb-mode-map (kbd (car binding))) (cdr binding)))))

(ert-deftest push-sldb-opens-a-live-failure ()
  (push-test--open "app.py")
  (push-test--http-get "/boom/7")
  (let (sldb)
    ;; Failures are listed as they are kept: ask again (g) until it is there.
    (should (push-test--wait
             (lambda ()
               (setq sldb (with-current-buffer (find-file-noselect (push-test--file "app.py"))
                            (push-errors)))
               (with-current-buffer sldb
                 (funcall (push-test--found "route GET /boom/7"))))))
    (with-current-buffer sldb
      (should (derived-mode-p 'push-sldb-mode))
      (goto-char (point-min))
      (re-search-forward "route GET /boom/7")
      ;; RET on the failure opens it: numbered frames with file:line and the source line.
      (push-sldb-ret)
      (should (funcall (push-test--found "^Failure .* route GET /boom/7")))
      (should (funcall (push-test--found "ZeroDivisionError")))
      (goto-char (point-min))
      (should (re-search-forward "^ +\\([0-9]+\\): main@v[0-9]+/app\\.py:\\([0-9]+\\) in boom$" nil t))
      (let ((line (string-to-number (match-string 2))))
        (forward-line 1)
        (should (looking-at " +return n // scale$"))
        (forward-line -1)
        ;; RET on the frame: its locals.
        (push-sldb-ret)
        (should (funcall (push-test--found "^ +n = 7$")))
        (should (funcall (push-test--found "^ +scale = 0$")))
        ;; e: evaluate in the frame; the result is in the buffer (and the echo area).
        (let ((result (push-sldb-eval "n * 6 + scale")))
          (should (equal (plist-get result :value) "42")))
        (should (funcall (push-test--found "^ +>>> n \\* 6 \\+ scale\n +=> 42$")))
        ;; v: the source, at the frame's line.
        (let ((source (save-excursion (push-sldb-visit))))
          (with-current-buffer source
            (should (equal buffer-file-name (push-test--file "app.py")))
            (should (equal (line-number-at-pos) line))
            (should (looking-at " +return n // scale"))))
        ;; r: the code is unchanged, so the replay fails again and says so.
        (let ((replay (push-sldb-replay)))
          (should (eq (plist-get replay :ok) :json-false)))
        (should (funcall (push-test--found "^Replay failed again")))
        ;; g keeps the failure open; l goes back to the list; q quits.
        (push-sldb-refresh)
        (should (funcall (push-test--found "^Frames:")))
        (push-sldb-list)
        (should (funcall (push-test--found "route GET /boom/7")))
        (should-not (funcall (push-test--found "^Frames:")))
        (pop-to-buffer sldb)
        (quit-window)
        (should-not (eq (window-buffer (selected-window)) sldb))
        ;; A bad id is refused with the node's message.
        (with-current-buffer sldb
          (let ((err (should-error (push-sldb-open "nonsense") :type 'user-error)))
            (should (string-match-p "^Push: .*is not a failure id" (cadr err)))))))))

(provide 'push-test)
;;; push-test.el ends here
