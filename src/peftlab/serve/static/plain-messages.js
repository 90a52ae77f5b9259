// Errors in the words of the Datasets and New experiment pages: the field as the page names it,
// without validator prefixes, API paths or request keys (the API's own text stays as it is).
"use strict";

const FIELD_LABELS = [
  ["data.system_prompt", "System prompt"], ["data.target", "Target column"], ["data.label", "Label column"],
  ["data.input", "Input column(s)"], ["data.prompt", "Prompt template"], ["data.image", "Image column"],
  ["data.max_train_examples", "Training examples"], ["data.max_test_examples", "Test examples"],
  ["data.max_validation_examples", "Validation examples"], ["training.max_steps", "Max steps"],
  ["training.epochs", "Epochs"], ["training.batch_size", "Batch size"], ["training.eval_every", "Validate every (steps)"],
  ["training.max_source_length", "Max source tokens"], ["training.max_target_length", "Max target tokens"],
  ["training.seed", "Seed"], ["training.learning_rate", "Learning rate"], ["evaluation.max_new_tokens", "Max new tokens"],
  ["tuning.trials", "Tune: trials per method"], ["max_source_length", "Max source tokens"],
  ["max_target_length", "Max target tokens"],
];

function plainMessage(msg) {
  let s = String(msg || "");
  s = s.replace(/Value error, /g, "").replace(/Assertion failed, /g, "");
  s = s.replace(/\s*\(replace: true\)/g, "");
  s = s.replace(/\s*\(GET \/api\/models lists each model's tasks\)/g, " (the Model list offers only the models that fit the task)");
  s = s.replace(/ \(--max-upload-mb\)/g, "");
  s = s.replace(/;? ?(?:pass|set|use) --[a-z][a-z-]+(?: [A-Z_]+)?/g, "");
  for (const [key, label] of FIELD_LABELS) s = s.split(key + ":").join(label + ":").split(key + " ").join(label + " ");
  s = s.replace(/\s*\(e\.g\. `(target|label|input): [^`]*`\)/g, (_, k) => ` (choose the ${k} column under Column mapping on the Datasets page)`);
  s = s.replace(/^methods\.(\d+)\.?/gm, (_, i) => `Method ${Number(i) + 1}: `);
  s = s.replace(/^name: /gm, "Experiment name: ");
  return s;
}

function showPlainError(el, e) { showError(el, new Error(plainMessage(e instanceof Error ? e.message : e))); }
