"""The Hugging Face reference of bench/quality.bench.ts: transformers' Trainer (+ PEFT for LoRA) with its
own defaults, on the split files tempered trained on, with the same hyperparameters.

The model is what tempered trains: the encoder (BertModel), masked mean pooling, dropout at the config's
classifier rate (BertForSequenceClassification's), a linear head drawn N(0, initializer_range²) with a zero
bias, cross-entropy. Trainer defaults a user gets: AdamW with no decay on biases and LayerNorm weights,
linear schedule with warmup, no length grouping, the last partial batch kept, dynamic padding.
Head-only: the encoder is frozen and runs in eval mode (tempered computes the features once, without
dropout); the classifier dropout still applies.

Usage: quality_reference.py --model DIR --data DIR (train/validation/test.jsonl, labels.json) --method lora|full|head
       --seed N --lr X [--epochs 3 --batch 16 --warmup-ratio 0.06 --weight-decay 0.01 --clip 1 --max-length 64
       --lora-r 8 --lora-alpha 16 --lora-dropout 0 --threads 2 --dropout RATE]
Prints one JSON line: {"f1_macro", "accuracy", "train_sec", "steps"}.
"""
import argparse
import json
import math
import os
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn


def read_jsonl(path):
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]


class MeanPoolClassifier(nn.Module):
    def __init__(self, model_dir, num_labels, dropout):
        super().__init__()
        from transformers import AutoConfig, AutoModel
        cfg = AutoConfig.from_pretrained(model_dir)
        if dropout is not None:
            cfg.hidden_dropout_prob = dropout
            cfg.attention_probs_dropout_prob = dropout
            cfg.classifier_dropout = dropout
        self.bert = AutoModel.from_pretrained(model_dir, config=cfg, add_pooling_layer=False)
        p = cfg.classifier_dropout if getattr(cfg, 'classifier_dropout', None) is not None else cfg.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=cfg.initializer_range)
        nn.init.zeros_(self.classifier.bias)
        self.frozen_encoder = False

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        logits = self.classifier(self.dropout(pooled))
        out = {'logits': logits}
        if labels is not None:
            out['loss'] = F.cross_entropy(logits, labels)
        return out

    def train(self, mode=True):
        super().train(mode)
        if self.frozen_encoder:
            self.bert.eval()
        return self


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', required=True)
    ap.add_argument('--data', required=True)
    ap.add_argument('--method', choices=['lora', 'full', 'head'], required=True)
    ap.add_argument('--seed', type=int, required=True)
    ap.add_argument('--lr', type=float, required=True)
    ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--warmup-ratio', type=float, default=0.06)
    ap.add_argument('--weight-decay', type=float, default=0.01)
    ap.add_argument('--clip', type=float, default=1.0)
    ap.add_argument('--max-length', type=int, default=64)
    ap.add_argument('--lora-r', type=int, default=8)
    ap.add_argument('--lora-alpha', type=float, default=16)
    ap.add_argument('--lora-dropout', type=float, default=0.0)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--dropout', type=float, default=None, help='every dropout rate (default: the config\'s)')
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    import transformers
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments
    transformers.logging.set_verbosity_error()

    labels = json.load(open(os.path.join(a.data, 'labels.json')))
    index = {l: i for i, l in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(a.model)

    def encode(rows):
        enc = tok([r['text'] for r in rows], truncation=True, max_length=a.max_length)
        return [{'input_ids': enc['input_ids'][i], 'attention_mask': enc['attention_mask'][i], 'token_type_ids': enc['token_type_ids'][i], 'labels': index[r['label']]} for i, r in enumerate(rows)]

    train = encode(read_jsonl(os.path.join(a.data, 'train.jsonl')))
    test_rows = read_jsonl(os.path.join(a.data, 'test.jsonl'))
    test = encode(test_rows)

    transformers.set_seed(a.seed)
    model = MeanPoolClassifier(a.model, len(labels), a.dropout)
    if a.method == 'head':
        model.frozen_encoder = True
        for p in model.bert.parameters():
            p.requires_grad_(False)
    elif a.method == 'lora':
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=a.lora_r, lora_alpha=a.lora_alpha, lora_dropout=a.lora_dropout, target_modules=['query', 'value'], modules_to_save=['classifier']))

    steps_per_epoch = math.ceil(len(train) / a.batch)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=a.batch, learning_rate=a.lr, num_train_epochs=a.epochs,
            warmup_steps=a.warmup_ratio, lr_scheduler_type='linear', weight_decay=a.weight_decay, max_grad_norm=a.clip,
            seed=a.seed, data_seed=a.seed, save_strategy='no', eval_strategy='no', report_to=[], use_cpu=True,
            dataloader_num_workers=0, logging_strategy='no', disable_tqdm=True, remove_unused_columns=False,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tok))
        t0 = time.time()
        result = trainer.train()
        train_sec = time.time() - t0

    model.eval()
    collate = DataCollatorWithPadding(tok)
    preds = []
    with torch.no_grad():
        for s in range(0, len(test), 64):
            b = collate([{k: v for k, v in r.items() if k != 'labels'} for r in test[s:s + 64]])
            preds.extend(model(**b)['logits'].argmax(-1).tolist())
    from sklearn.metrics import accuracy_score, f1_score
    y = [index[r['label']] for r in test_rows]
    print(json.dumps({
        'f1_macro': f1_score(y, preds, average='macro', labels=list(range(len(labels)))), 'accuracy': accuracy_score(y, preds),
        'train_sec': train_sec, 'steps': result.global_step, 'steps_per_epoch': steps_per_epoch,
        'torch': torch.__version__, 'transformers': transformers.__version__,
    }))


main()
